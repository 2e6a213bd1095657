/**
 * The reducer's clock: every rule that fires with time rather than with a frame, as rows of one table. Each row
 * says what it does on a `tick` event (`fire`) and when it next has something to do (`next`, a pure query on the
 * state). {@linkcode onTick} runs every row; {@linkcode nextDeadline} is the earliest `next`, so the shell arms one
 * timer for it instead of ticking on a period. A tick at any other time is harmless: a row whose time has not
 * come does nothing.
 *
 * Rows whose firing nobody can observe (dropping expired cache entries, only memory) report their time plus
 * {@linkcode SWEEP_SLACK_MS}, so that a stream of expiries costs one wake-up a second rather than one per entry.
 *
 * Time-driven behaviour not in the table: dial delays and backoff (`dial` effects carry `afterMs` and
 * `timeoutMs`; the shell's timers answer with `connected` or `dialFailed`), the offline queue's expiry (`notBefore`
 * on the hand-over effects, applied by the store when the frames are read), token buckets (refilled lazily, at the
 * next frame) and freshness (judged at arrival).
 *
 * @example The deadline is when the next rule fires
 * ```ts
 * import { DEFAULT_FEDERATION, DEFAULT_LIMITS } from "./types.ts";
 * import { initState, reduce } from "./reduce.ts";
 * import { nextDeadline } from "./timers.ts";
 *
 * let state = initState({
 *   serverId: crypto.randomUUID(),
 *   serverPub: "spki",
 *   serverPubPem: "pem",
 *   limits: { ...DEFAULT_LIMITS },
 *   federation: { ...DEFAULT_FEDERATION },
 *   labWeakKeys: false,
 *   labReplay: false,
 * });
 * state = reduce(state, { kind: "connected", conn: 1, addr: "127.0.0.1", now: 0 }).state;
 * const at = nextDeadline(state)!; // the first-frame timeout: firstFrameMs after the connection opened
 * if (reduce(state, { kind: "tick", now: at - 1 }).effects.length !== 0) throw new Error("too early");
 * if (reduce(state, { kind: "tick", now: at }).effects.length === 0) throw new Error("it fires at the deadline");
 * ```
 * @module
 */
import { fileDeadline, fileTimers } from "./files.ts";
import { joinDeadline, joinTimers } from "./join.ts";
import { forgetFullHelloBuckets, helloBucketsFullAt } from "./limits.ts";
import { linkDeadline, linkTimers } from "./links.ts";
import type { Out } from "./out.ts";
import { presenceTsExpiry, SWEEP_SLACK_MS } from "./state.ts";
import type { State } from "./types.ts";

export { SWEEP_SLACK_MS } from "./state.ts";

/** One time-driven rule. */
interface TimerRule {
  /** What the rule does on a tick (nothing when its time has not come). */
  fire(out: Out): void;
  /** The earliest time at which `fire` does something, as the state stands (Infinity: never, unless it changes). */
  next(state: State): number;
}

/** The time-driven rules, in the order a tick runs them. */
const TIMERS: readonly TimerRule[] = [
  // The seen cache (SOCP §7.2): expired keys go (a lookup already ignores them, so this is only memory).
  { fire: (out) => out.state.seen.expire(out.now), next: (s) => s.seen.nextExpiry() + SWEEP_SLACK_MS },
  // Per-address hello and JOIN buckets that have refilled are forgotten (a full bucket is the same as none), and
  // so is the time of the last advert or removal of a user not online anywhere, a seen-cache TTL later. Both can
  // be many (one per address, one per user of the network): the time of the next sweep is kept in the state
  // (`sweepAt`, lowered where entries are written) and found again here, instead of scanning after every step.
  {
    fire: (out) => {
      const { state, now } = out;
      forgetFullHelloBuckets(state, now);
      let next = helloBucketsFullAt(state);
      for (const [u, ts] of state.presenceTs) {
        if (state.presence.has(u)) continue; // online: kept (a removal or a lost link writes it again)
        const at = presenceTsExpiry(state, ts);
        if (at <= now) state.presenceTs.delete(u);
        else next = Math.min(next, at);
      }
      state.sweepAt = next;
    },
    next: (s) => s.sweepAt + SWEEP_SLACK_MS,
  },
  // An inbound connection that has not sent its first frame within `firstFrameMs`: ERROR TIMEOUT and close.
  {
    fire: (out) => {
      const { state, now } = out;
      const { firstFrameMs } = state.config.limits;
      for (const conn of state.conns.values()) {
        if (conn.role === "pending" && !conn.dial && now - conn.openedAt > firstFrameMs) {
          out.error(conn.id, "", "TIMEOUT", `no USER_HELLO within ${firstFrameMs / 1000} s`);
          out.close(conn.id, 1008, "first frame timeout");
          conn.openedAt = Infinity; // report once
        }
      }
    },
    next: (state) => {
      let first = Infinity;
      for (const conn of state.conns.values()) {
        if (conn.role === "pending" && !conn.dial) {
          first = Math.min(first, conn.openedAt + state.config.limits.firstFrameMs + 1);
        }
      }
      return first;
    },
  },
  // Links: heartbeats due, silent links cut (links.ts).
  { fire: linkTimers, next: linkDeadline },
  // Join connections without a welcome in time (join.ts).
  { fire: joinTimers, next: joinDeadline },
  // Stalled file transfers (files.ts).
  { fire: fileTimers, next: fileDeadline },
];

/** The clock ticked: run every time-driven rule whose time has come. */
export function onTick(out: Out): void {
  for (const t of TIMERS) t.fire(out);
}

/**
 * When the reducer next needs the clock: the earliest time at which a `tick` event makes a time-driven rule
 * fire, or null when none is pending (nothing will happen until another event arrives). A pure query on the
 * state, asked by the shell after each step (the state changes only in steps); a tick at the deadline fires the
 * rule, a tick before it changes nothing anyone can observe.
 */
export function nextDeadline(state: State): number | null {
  let first = Infinity;
  for (const t of TIMERS) first = Math.min(first, t.next(state));
  return Number.isFinite(first) ? first : null;
}
