/**
 * The reducer's initial state: empty, plus what the store holds (bound users, pinned servers, queues, the
 * channel).
 *
 * @module
 */
import { SeenCache } from "./dedupe.ts";
import type { Loaded, NodeConfig, State } from "./types.ts";

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
