/**
 * The reducer's initial state: empty, plus what the store holds (bound users, pinned servers, queues, the
 * channel).
 *
 * @module
 */
import { SeenCache } from "./dedupe.ts";
import type { Loaded, NodeConfig, State } from "./types.ts";

/** How late a sweep of memory-only state (expired cache entries) may run, to batch its wake-ups. */
export const SWEEP_SLACK_MS = 1000;

/** Something swept by the clock may go at `at`: make sure a sweep is due by then. */
export function sweepBy(state: State, at: number): void {
  if (at < state.sweepAt) state.sweepAt = at;
}

/**
 * Record the `ts` of the last advert or removal applied for a user; once the user is not online anywhere, the
 * entry goes a seen-cache TTL later (timers.ts).
 */
export function setPresenceTs(state: State, userId: string, ts: number): void {
  state.presenceTs.set(userId, ts);
  sweepBy(state, presenceTsExpiry(state, ts));
}

/** When a presence time `ts` may go (for a user not online anywhere). */
export function presenceTsExpiry(state: State, ts: number): number {
  return ts + state.config.limits.seenTtlMs + 1;
}

/** A fresh state, with what the store holds (bound users, pinned servers, queues, the channel). */
export function initState(config: NodeConfig, loaded: Partial<Loaded> = {}): State {
  return {
    config,
    conns: new Map(),
    connsPerAddr: new Map(),
    helloBuckets: new Map(),
    joinBuckets: new Map(),
    localUsers: new Map(),
    users: new Map((loaded.users ?? []).map((u) => [u.userId, u])),
    pins: new Map(loaded.pins ?? []),
    presence: new Map(),
    presenceTs: new Map(),
    sweepAt: Infinity,
    seen: SeenCache.restored(config.limits.seenTtlMs, config.limits.seenMax, loaded.seen ?? []),
    servers: new Map((loaded.servers ?? []).map((s) => [s.serverId, s])),
    links: new Map(),
    linkDialer: new Map(),
    dials: new Map(),
    backoff: new Map(),
    helloKind: new Map(),
    peerSoftware: new Map(),
    nextToken: 1,
    join: { phase: "idle", retryMs: 1000 },
    advertise: { host: "", port: 0 },
    channel: loaded.channel
      ? {
        version: loaded.channel.version,
        creatorPub: loaded.channel.creatorPub,
        members: new Set(loaded.channel.members),
      }
      : null,
    channelPending: false,
    queued: new Map(loaded.queued ?? []),
    outbox: new Map(loaded.outbox ?? []),
    homes: new Map(loaded.homes ?? []),
    transfers: new Map(),
    acceptedRefs: new Map(loaded.acceptedRefs ?? []),
  };
}
