/**
 * Fake time for the shell's tests: {@linkcode FakeTime} is a `Timers` and a clock that move only when the test
 * says so. `settle()` lets promise jobs run and runs the queued next-turn callbacks (one batch per turn) without
 * moving the clock; `advance(ms)` runs the timers due on the way; `until(cond)` settles and moves to the next
 * timer until `cond` holds, failing past a deadline in fake time. No real timer is ever set, so nothing here
 * sleeps: whatever the shell waits for must come from a fake (signer, digest, verify) that resolves at once.
 */
import type { Timers } from "../../lib/net/ports.ts";

interface Armed {
  at: number;
  seq: number;
  fn: () => void;
}

/** Timers and a clock the test moves. */
export class FakeTime implements Timers {
  /** The clock (ms). */
  now: number;
  /** Turns of the fake event loop run so far (batches of `immediate` callbacks). */
  turns = 0;
  /** While true, `settle` does not run next-turn callbacks (the test holds the turn). */
  hold = false;
  readonly armed = new Map<number, Armed>();
  #next = 1;
  #immediates: (() => void)[] = [];

  constructor(start = 1_700_000_000_000) {
    this.now = start;
  }

  /** The clock as a function. */
  clock = (): number => this.now;

  set(fn: () => void, ms: number): unknown {
    const h = this.#next++;
    this.armed.set(h, { at: this.now + Math.max(0, ms), seq: h, fn });
    return h;
  }

  clear(handle: unknown): void {
    this.armed.delete(handle as number);
  }

  immediate(fn: () => void): void {
    this.#immediates.push(fn);
  }

  /** Next-turn callbacks waiting. */
  get waitingTurns(): number {
    return this.#immediates.length;
  }

  /** Let promise jobs run (a fixed number of microtask hops: every fake here resolves at once). */
  async flush(): Promise<void> {
    for (let i = 0; i < 200; i++) await null;
  }

  /** Run one turn: the next-turn callbacks queued so far (those they queue wait for the next turn). */
  async turn(): Promise<void> {
    const batch = this.#immediates.splice(0);
    this.turns++;
    for (const fn of batch) fn();
    await this.flush();
  }

  /** Let promise jobs and next-turn callbacks run until none is left (the clock does not move). */
  async settle(): Promise<void> {
    await this.flush();
    for (let i = 0; !this.hold && this.#immediates.length > 0; i++) {
      if (i > 100_000) throw new Error("the next-turn callbacks never settle");
      await this.turn();
    }
  }

  /** Move the clock by `ms`, running the timers due on the way, in order. */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    await this.settle();
    for (;;) {
      const due = this.#due(end);
      if (!due) break;
      this.armed.delete(due.seq);
      this.now = Math.max(this.now, due.at);
      due.fn();
      await this.settle();
    }
    this.now = end;
  }

  /** Settle, then move from timer to timer until `cond` holds; fail past `ms` of fake time. */
  async until<T>(cond: () => T | undefined | false, what: string, ms = 60_000): Promise<T> {
    const end = this.now + ms;
    for (;;) {
      await this.settle();
      const v = cond();
      if (v !== undefined && v !== false) return v;
      const due = this.#due(end);
      if (!due) throw new Error(`no more timers before ${ms} ms of fake time waiting for ${what}`);
      this.armed.delete(due.seq);
      this.now = Math.max(this.now, due.at);
      due.fn();
    }
  }

  #due(end: number): Armed | undefined {
    let first: Armed | undefined;
    for (const t of this.armed.values()) {
      if (t.at <= end && (!first || t.at < first.at || (t.at === first.at && t.seq < first.seq))) first = t;
    }
    return first;
  }
}
