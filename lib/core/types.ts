/**
 * The reducer's vocabulary: its state and result, and (re-exported) its configuration (config.ts), records
 * (records.ts), events and effects (effects.ts). Pure data; no I/O.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import type { SeenCache } from "./dedupe.ts";
import type { Effect } from "./effects.ts";
import type { NodeConfig } from "./config.ts";
import type { ServerRecord, UserRecord } from "./records.ts";

export * from "./config.ts";
export * from "./records.ts";
export * from "./effects.ts";

/** A connection's role once its first frame is accepted. */
export type Role = "pending" | "user" | "server";

/** Why and where the node dials out. */
export interface DialIntent {
  /** Names the dial; comes back in `connected` or `dialFailed`. */
  token: number;
  /** Joining a network through a bootstrap entry, or linking to a known server. */
  purpose: "join" | "link";
  /** Host to dial. */
  host: string;
  /** Port to dial. */
  port: number;
  /** The key the other end must prove (bootstrap entry or pinned key). */
  expectKey: string;
  /** The server we mean to link to (purpose "link"). */
  serverId?: string;
  /** Position in the bootstrap list (purpose "join"). */
  bootstrapIndex?: number;
  /** URL path and TLS of the endpoint (from a bootstrap URL). */
  path?: string;
  /** Dial with TLS (`wss://`). */
  tls?: boolean;
  /**
   * The hello a "link" dial opens with: some servers accept only SERVER_HELLO_JOIN, dial-back introducers only
   * SERVER_ANNOUNCE (PROFILE §15).
   */
  hello?: HelloKind;
}

/** The first frame of a link we dial: SERVER_HELLO_LINK, SERVER_HELLO_JOIN or SERVER_ANNOUNCE (PROFILE §15). */
export type HelloKind = "link" | "join" | "announce";

/** Per-connection state. */
export interface Conn {
  /** Connection id, assigned by the shell. */
  id: number;
  /** The peer's address (for the per-address limit). */
  addr: string;
  /** When it opened. */
  openedAt: number;
  /** What the peer is, once its first frame was accepted. */
  role: Role;
  /** Users: their id. */
  userId?: string;
  /** Frames refused so far (see {@linkcode Limits.maxStrikes}). */
  strikes: number;
  /** Rate-limit tokens left. */
  tokens: number;
  /** When the tokens were last refilled. */
  refilledAt: number;
  /** The rate limit is refusing its frames (so the refusal is reported once). */
  throttled: boolean;
  /** Server links: the peer's id. */
  serverId?: string;
  /** Set when we dialed this connection. */
  dial?: DialIntent;
  /** The peer presented its key as base64url(PEM text): mirror that form (PROFILE §1). */
  pemDialect: boolean;
  /** When a frame last arrived on it. */
  lastSeen: number;
  /** When we last sent on it. */
  lastSent: number;
  /**
   * The linked server has sent at least one HEARTBEAT of its own. Pongs are not observable on our links (PROFILE
   * §15 liveness), so silence closes only the links of servers that heartbeat with frames.
   */
  peerHeartbeats?: boolean;
}

/** The public channel as the reducer sees it (the private key stays in the shell). */
export interface Channel {
  /** Key version (a new key, a new version). */
  version: number;
  /** The channel's public key (base64url DER SPKI). */
  creatorPub: string;
  /** User ids the channel key was shared with. */
  members: Set<string>;
}

/** A file transfer passing through this server. */
export interface Transfer {
  /** The transfer's `file_id`. */
  fileId: string;
  /** Sender user id. */
  from: string;
  /** Recipient user id, or "public". */
  to: string;
  /** A direct transfer or one to the public channel. */
  mode: "dm" | "public";
  /** Announced plaintext size in bytes. */
  size: number;
  /** Ciphertext bytes seen, and the most the announced size allows. */
  ctBytes: number;
  /** Most ciphertext bytes the announced size allows. */
  maxCtBytes: number;
  /** When its last frame passed. */
  lastAt: number;
  /** The sender's connection when the sender is local. */
  senderConn?: number;
  /** The linked server it came from, when it came from one. */
  viaServer?: string;
}

/** Where we are in joining a network. */
export interface JoinState {
  /** Not started, under way, part of a network, or alone (an introducer or no entry answered). */
  phase: "idle" | "joining" | "joined" | "alone";
  /** Delay before retrying the bootstrap list when no entry answered. */
  retryMs: number;
}

/** Where an online user is, and the advert that says so. */
export interface Presence {
  /** The user's id. */
  userId: string;
  /** Their home server. */
  serverId: string;
  /** For local users the unsigned advert (the shell signs it, once per distinct payload). */
  advert: Envelope<"USER_ADVERTISE">;
}

/** The whole node state. `reduce` takes ownership and returns it (updated in place). */
export interface State {
  /** This node's configuration. */
  config: NodeConfig;
  /** Open connections by id. */
  conns: Map<number, Conn>;
  /** Open connection count per peer address. */
  connsPerAddr: Map<string, number>;
  /** USER_HELLO token buckets per remote address (entries go once full again). */
  helloBuckets: Map<string, { tokens: number; refilledAt: number }>;
  /** SERVER_HELLO_JOIN token buckets per remote address. */
  joinBuckets: Map<string, { tokens: number; refilledAt: number }>;
  /** Users connected here: user id -> connection. */
  localUsers: Map<string, number>;
  /** Users bound to keys at this server, by id. */
  users: Map<string, UserRecord>;
  /**
   * PROFILE §16 pins of users bound elsewhere: user id -> the key first seen for them in a USER_ADVERTISE (users
   * bound here are pinned by their `users` row). One key per id, network-wide.
   */
  pins: Map<string, string>;
  /**
   * When the per-address buckets or the presence times next need a sweep (exact, without the slack; Infinity:
   * nothing to sweep). Lowered where an entry is written (`sweepBy` in state.ts), recomputed by each tick, so that
   * the next deadline is found without scanning them after every step.
   */
  sweepAt: number;
  /** Who is online where, by user id. */
  presence: Map<string, Presence>;
  /**
   * The `ts` of the last advert or removal applied per user: gossip reaches us by several paths, so an older
   * advert may arrive after the removal that followed it; it must not bring the user back.
   */
  presenceTs: Map<string, number>;
  /** Duplicate detection (SOCP §7.2). */
  seen: SeenCache;
  /** Pinned server keys by server id. */
  servers: Map<string, ServerRecord>;
  /** Live server links: server id -> connection. */
  links: Map<string, number>;
  /** Who dialed each live link (a server id), for the duplicate-link tie-break. */
  linkDialer: Map<number, string>;
  /** Pending dials by token. */
  dials: Map<number, DialIntent>;
  /** Reconnect delay per server id. */
  backoff: Map<string, number>;
  /** The hello that opens our next link dial to a server (PROFILE §15 re-linking); absent means LINK. */
  helloKind: Map<string, HelloKind>;
  /**
   * What each linked server said it runs (its welcome or /.well-known/socp `software`); "" when it said
   * nothing. Only servers that say `socp/…` get the outbox ACK extension (PROFILE §15).
   */
  peerSoftware: Map<string, string>;
  /** Next dial token. */
  nextToken: number;
  /** Progress of joining the network. */
  join: JoinState;
  /** The address we advertise to other servers (known once listening). */
  advertise: { host: string; port: number };
  /** The public channel, once this node holds its key. */
  channel: Channel | null;
  /** A channel key is being created or adopted by the shell. */
  channelPending: boolean;
  /** Frames waiting in SQLite per offline local user (counts; the frames stay in the store). */
  queued: Map<string, number>;
  /** SERVER_DELIVERs waiting per unreachable server (counts). */
  outbox: Map<string, number>;
  /** Last known home server of every user seen advertised. */
  homes: Map<string, string>;
  /** File transfers in flight, by `from|file_id`. */
  transfers: Map<string, Transfer>;
  /**
   * msg_refs of ack-requested SERVER_DELIVERs this node took (persisted, bounded): a sender resends until our ACK
   * arrives, possibly after we restarted, so the seen cache alone cannot stop a second delivery.
   */
  acceptedRefs: Map<string, number>;
}

/** What the store hands the reducer at start. */
export interface Loaded {
  /** Users bound to keys here. */
  users: UserRecord[];
  /** Pinned servers. */
  servers: ServerRecord[];
  /** Last known home server per user: [user id, server id]. */
  homes: [string, string][];
  /** Queued frame counts per offline user: [user id, count]. */
  queued: [string, number][];
  /** Outbox frame counts per server: [server id, count]. */
  outbox: [string, number][];
  /** The public channel this node holds, if any. */
  channel: { version: number; creatorPub: string; members: string[] } | null;
  /** Accepted msg_refs with their time: [msg_ref, ms]. */
  acceptedRefs: [string, number][];
  /** Pinned keys of users bound elsewhere: [user id, pubkey]. */
  pins: [string, string][];
  /** Persisted seen-cache keys (replays across restarts, PROFILE §16) with their expiry: [key, ms]. */
  seen: [string, number][];
}

/** The reducer's result. */
export interface Step {
  /** The state after the event. */
  state: State;
  /** What the shell must do, in order. */
  effects: Effect[];
}
