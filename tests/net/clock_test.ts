/** The node's deadline clock and activity hooks (lib/net/clock.ts) on timers the test fires by hand. */
import assert from "node:assert/strict";
import { ActivityHooks, DeadlineClock, MIN_TICK_GAP_MS } from "../../lib/net/clock.ts";
import { Counters } from "../../lib/net/counters.ts";
import type { Timers } from "../../lib/net/ports.ts";

class HandTimers implements Timers {
  #next = 1;
  readonly armed = new Map<number, { fn: () => void; ms: number }>();
  set(fn: () => void, ms: number): unknown {
    const h = this.#next++;
    this.armed.set(h, { fn, ms });
    return h;
  }
  clear(h: unknown): void {
    this.armed.delete(h as number);
  }
  /** Run every armed timer. */
  fireAll(): void {
    const due = [...this.armed];
    this.armed.clear();
    for (const [, t] of due) t.fn();
  }
  get delays(): number[] {
    return [...this.armed.values()].map((t) => t.ms);
  }
}

Deno.test("the deadline clock keeps one timer: an earlier deadline re-arms it, a later one leaves it", () => {
  const timers = new HandTimers();
  let now = 1_000;
  const ticks: number[] = [];
  const clock = new DeadlineClock(timers, () => now, (at) => ticks.push(at));
  clock.arm(null);
  assert.deepEqual(timers.delays, [], "nothing due: no timer");
  clock.arm(6_000);
  assert.deepEqual(timers.delays, [5_000]);
  clock.arm(9_000);
  assert.deepEqual(timers.delays, [5_000], "a later deadline leaves the timer");
  clock.arm(3_000);
  assert.deepEqual(timers.delays, [2_000], "an earlier one replaces it: still one timer");
  now = 3_000;
  timers.fireAll();
  assert.deepEqual(ticks, [3_000]);
  clock.arm(3_000);
  assert.deepEqual(timers.delays, [MIN_TICK_GAP_MS], "never sooner than the gap after a tick");
  clock.stop();
  assert.deepEqual(timers.delays, []);
  clock.arm(4_000);
  assert.deepEqual(timers.delays, [], "nothing is armed once stopped");
});

Deno.test("the idle hook runs once quiet, the bytes hook once per budget", () => {
  const timers = new HandTimers();
  const counters = new Counters();
  let idle = 0, bytes = 0, waiting = 0;
  const hooks = new ActivityHooks(
    { onIdle: { afterMs: 2_000, run: () => idle++ }, onBytes: { bytes: 100, run: () => bytes++ } },
    timers,
    counters,
    () => waiting,
  );
  counters.framesIn = 1;
  hooks.step();
  hooks.step();
  assert.deepEqual(timers.delays, [2_000], "one idle timer however many steps");
  counters.framesIn = 2; // a frame moved while the timer ran
  timers.fireAll();
  assert.equal(idle, 0);
  assert.deepEqual(timers.delays, [2_000], "busy: armed again");
  waiting = 1;
  timers.fireAll();
  assert.equal(idle, 0, "effects waiting: still busy");
  waiting = 0;
  timers.fireAll();
  assert.equal(idle, 1, "quiet: the hook ran");
  assert.deepEqual(timers.delays, [], "and waits for the next step");
  counters.frameBytes = 99;
  hooks.step();
  assert.equal(bytes, 0);
  counters.frameBytes = 150;
  hooks.step();
  assert.equal(bytes, 1);
  counters.frameBytes = 240;
  hooks.step();
  assert.equal(bytes, 1, "the budget counts from the last run");
  counters.frameBytes = 250;
  hooks.step();
  assert.equal(bytes, 2);
  hooks.stop();
  assert.deepEqual(timers.delays, []);
});
