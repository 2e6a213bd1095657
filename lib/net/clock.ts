/**
 * The node's time-driven parts, on injected timers: {@linkcode DeadlineClock}, one timer armed for the reducer's
 * next deadline (never a period), and {@linkcode ActivityHooks}, the idle hook (a timer armed at a step, run once
 * the node has been quiet) and the bytes hook (run after a step once a budget of frame bytes went in or out).
 * `createNode` (create_node.ts) wires both to the executor's steps; `startNode` (node.ts) collects garbage from
 * the hooks.
 *
 * @example
 * ```ts
 * import { DeadlineClock } from "./clock.ts";
 * const clock = new DeadlineClock({ set: setTimeout, clear: (h) => clearTimeout(h as number) }, Date.now, () => {});
 * clock.arm(Date.now() + 1000); // one timer, fired in a second unless an earlier deadline re-arms it
 * clock.stop();
 * ```
 * @module
 */
import type { Counters } from "./counters.ts";
import type { Timers } from "./ports.ts";

/**
 * The clock's timer is never armed sooner than this after the previous tick: a guard against a rule whose
 * deadline does not move once it fired (a bug would otherwise spin the event loop); a deadline this close to
 * the last tick fires at most this late.
 */
export const MIN_TICK_GAP_MS = 20;

/**
 * One timer for the reducer's next deadline (lib/core/timers.ts). Every step may move the deadline: one that
 * moved it earlier re-arms the timer; one that moved it later leaves it, and the early tick is harmless (the
 * tick re-arms for the new deadline).
 */
export class DeadlineClock {
  #timer: unknown;
  #at = Infinity;
  #lastTick = -Infinity;
  #stopped = false;

  /** `tick(now)` runs when the timer fires; it dispatches the tick and arms the next deadline. */
  constructor(
    private readonly timers: Timers,
    private readonly now: () => number,
    private readonly tick: (now: number) => void,
  ) {}

  /** Arm for `deadline` (ms since the epoch; null: nothing due) unless the timer already fires sooner. */
  arm(deadline: number | null): void {
    if (this.#stopped) return;
    const at = Math.max(deadline ?? Infinity, this.#lastTick + MIN_TICK_GAP_MS);
    if (at >= this.#at) return;
    if (this.#timer !== undefined) this.timers.clear(this.#timer);
    this.#at = at;
    this.#timer = Number.isFinite(at)
      ? this.timers.set(() => this.#fire(), Math.max(0, at - this.now()))
      : undefined;
  }

  /** Clear the timer; nothing is armed after this. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.timers.clear(this.#timer);
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    this.#at = Infinity;
    this.#lastTick = this.now();
    this.tick(this.#lastTick);
  }
}

/** What the idle and bytes hooks may read of the node. */
export interface NodeActivity {
  /** Frames received plus frames sent, since start. */
  frames(): number;
  /** Effects waiting for a turn of the event loop. */
  effectsWaiting(): number;
}

/** The hooks a node runs on its activity (both optional). */
export interface ActivityHookParts {
  /**
   * Runs once the node has been quiet for `afterMs` (no frame received or sent, no effect waiting), and again
   * after each later busy spell: a timer armed when the reducer steps, never a period.
   */
  onIdle?: { afterMs: number; run: (view: NodeActivity) => void };
  /** Runs after a step of the reducer once `bytes` more bytes of frames went in or out since it last ran. */
  onBytes?: { bytes: number; run: (view: NodeActivity) => void };
}

/**
 * The idle hook (a timer armed at a step, checked once it runs out: busy still, frames moved or effects waiting,
 * it is armed again; quiet, the hook runs and waits for the next step) and the bytes hook.
 */
export class ActivityHooks {
  #idleTimer: unknown;
  #idleFrames = -1;
  #bytesAtLast = 0;
  #stopped = false;
  readonly view: NodeActivity;

  constructor(
    private readonly hooks: ActivityHookParts,
    private readonly timers: Timers,
    private readonly counters: Counters,
    effectsWaiting: () => number,
  ) {
    this.view = { frames: () => counters.framesIn + counters.framesOut, effectsWaiting };
  }

  /** After each step of the reducer. */
  step(): void {
    this.#armIdle();
    const b = this.hooks.onBytes;
    if (b && this.counters.frameBytes - this.#bytesAtLast >= b.bytes) {
      this.#bytesAtLast = this.counters.frameBytes;
      b.run(this.view);
    }
  }

  /** Clear the idle timer; nothing is armed after this. */
  stop(): void {
    this.#stopped = true;
    if (this.#idleTimer !== undefined) this.timers.clear(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  #armIdle(): void {
    const idle = this.hooks.onIdle;
    if (!idle || this.#idleTimer !== undefined || this.#stopped) return;
    this.#idleFrames = this.view.frames();
    this.#idleTimer = this.timers.set(() => this.#idleCheck(), idle.afterMs);
  }

  #idleCheck(): void {
    this.#idleTimer = undefined;
    if (this.view.frames() !== this.#idleFrames || this.view.effectsWaiting() > 0) return this.#armIdle();
    this.hooks.onIdle!.run(this.view);
  }
}
