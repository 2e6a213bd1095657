/**
 * The reducer's vocabulary: configuration, state, the events the shell feeds in and the effects it carries
 * out. Pure data; no I/O.
 *
 * @module
 */
import type { AnyEnvelope, Envelope, ParseResult } from "../protocol/envelope.ts";
import type { SeenCache } from "./dedupe.ts";

/** Limits of PROFILE §11 (all configurable). */
export interface Limits {
  /** Largest frame accepted, in bytes. */
  maxFrameBytes: number;
  /** A new connection must send its first frame within this many ms. */
  firstFrameMs: number;
  /** A frame's `ts` may differ from our clock by at most this many ms. */
  freshnessMs: number;
  /** Frames per second a connection may send (token bucket refill rate). */
  ratePerSec: number;
  /** Token bucket size: frames a connection may send in a burst. */
  rateBurst: number;
  /** Refused frames after which the connection is closed. */
  maxStrikes: number;
  /** How long a frame key stays in the seen (duplicate) cache. */
  seenTtlMs: number;
  /** Most keys kept in the seen cache. */
  seenMax: number;
  /** Most open connections from one address. */
  maxConnsPerAddr: number;
  /** Offline queue bound per user (PROFILE §10). */
  maxQueuePerUser: number;
  /** How long queued frames are kept. */
  queueTtlMs: number;
  /** Largest file a transfer may announce (PROFILE §9). */
  maxFileBytes: number;
  /** A transfer without a chunk for this long is dropped. */
  fileStallMs: number;
  /** Bytes that may wait to be sent on one connection (its peer not reading); past it the connection is cut. */
  maxUnsentBytes: number;
  /** USER_HELLOs admitted per second from one address (token bucket). */
  helloPerSec: number;
  /** The size of that bucket: how many hellos one address may send at once. */
  helloBurst: number;
  /** SERVER_HELLO_JOINs admitted per minute from one address (token bucket; PROFILE §16 open federation). */
  joinPerMin: number;
  /** The size of that bucket. */
  joinBurst: number;
}

/** The defaults of PROFILE §11. */
export const DEFAULT_LIMITS: Readonly<Limits> = {
  maxFrameBytes: 256 * 1024,
  firstFrameMs: 10_000,
  freshnessMs: 10 * 60_000,
  ratePerSec: 100,
  rateBurst: 400,
  maxStrikes: 10,
  seenTtlMs: 10 * 60_000,
  seenMax: 100_000,
  maxConnsPerAddr: 64,
  maxQueuePerUser: 1_000,
  queueTtlMs: 30 * 24 * 3600_000,
  maxFileBytes: 16 * 1024 * 1024,
  fileStallMs: 5 * 60_000,
  maxUnsentBytes: 8 * 1024 * 1024,
  helloPerSec: 10,
  helloBurst: 30,
  joinPerMin: 6,
  joinBurst: 20,
};

/** One entry of the bootstrap list (the standard's YAML shape). */
export interface BootstrapEntry {
  /** Host name or address of the server. */
  host: string;
  /** Its port. */
  port: number;
  /** Its public key (the key it must prove it holds). */
  pubkey: string;
  /** URL path of the WebSocket endpoint (`ws://host:port/chat#KEY`, PROFILE §15); default "". */
  path?: string;
  /** Dial with TLS (`wss://…`). */
  tls?: boolean;
}

/** Federation settings (PROFILE §12). */
export interface FederationConfig {
  /** Servers to join through, in order. */
  bootstrap: BootstrapEntry[];
  /** Start a network alone instead of joining one. */
  introducer: boolean;
  /** Interval of our HEARTBEATs on server links. */
  heartbeatMs: number;
  /** A link silent this long is closed. */
  linkTimeoutMs: number;
  /** When non-empty, only servers presenting one of these keys may join or link. */
  allowedServerKeys: string[];
  /** A dial whose connection has not opened after this long is given up (and counts as failed). */
  dialTimeoutMs: number;
}

/** The defaults of PROFILE §12. */
export const DEFAULT_FEDERATION: Readonly<FederationConfig> = {
  bootstrap: [],
  introducer: false,
  heartbeatMs: 15_000,
  linkTimeoutMs: 45_000,
  allowedServerKeys: [],
  dialTimeoutMs: 10_000,
};

/** What the reducer needs to know about this node. */
export interface NodeConfig {
  /** Our server id (replaced once if an introducer assigns another). */
  serverId: string;
  /** Our public key, base64url(DER SPKI). */
  serverPub: string;
  /** Our public key as base64url(PEM text), for peers that speak that dialect (PROFILE §1). */
  serverPubPem: string;
  /** Limits (PROFILE §11). */
  limits: Limits;
  /** Federation settings (PROFILE §12). */
  federation: FederationConfig;
  /** PROFILE §13 lab modes. */
  labWeakKeys: boolean;
  /** Accept replays of old frames (lab mode). */
  labReplay: boolean;
}

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

/** A server whose key is pinned to its id (a `servers` row). */
export interface ServerRecord {
  /** The server's id. */
  serverId: string;
  /** Where it listens. */
  host: string;
  /** Its port. */
  port: number;
  /** Its pinned public key. */
  pubkey: string;
  /** Endpoint path and TLS when it was dialed through a bootstrap URL (kept in memory only). */
  path?: string;
  /** It serves TLS (`wss://`). */
  tls?: boolean;
  /**
   * PROFILE §16: the pin rests only on an unsigned JOIN (a key presented, never proven). It lives in memory only,
   * is never dialed, and goes with its link, unless a verified frame on the link makes it a real pin first.
   */
  claimed?: true;
  /**
   * The pin came from a welcome's server list or an announce and was never linked: kept in memory only (it is
   * dialed) until a verified frame on a link to it makes it a persisted pin. Pins that never linked expire.
   */
  unlinked?: true;
  /**
   * The server joined with an unsigned JOIN: its address is an unsigned claim, so we never dial it (it redials
   * us), even once a verified frame made the pin real. Persisted.
   */
  noDial?: true;
}

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

/** A user bound to keys at this server (a `users` row). */
export interface UserRecord {
  /** The user's id. */
  userId: string;
  /** Their signing public key. */
  pubkey: string;
  /** Their encryption public key (usually the same key). */
  encPubkey: string;
  /** The `meta` of their hello (display name and such), or null. */
  meta: Record<string, unknown> | null;
  /** Bumped on every change of the row. */
  version: number;
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

/** The outcome of the shell's signature check on a frame. */
export type SigCheck = "valid" | "invalid" | "absent";

/** Facts the shell established. */
export type Event =
  | { kind: "started"; now: number; host: string; port: number }
  | { kind: "connected"; conn: number; addr: string; now: number; dial?: number }
  | { kind: "dialFailed"; token: number; now: number; reason: string }
  | {
    kind: "frame";
    conn: number;
    now: number;
    parsed: ParseResult;
    /** Hex SHA-256 of the canonical payload ("" when the frame did not parse). */
    digest: string;
    sig: SigCheck;
    /** The key the signature was checked against (when `sig` is "valid"). */
    sigKey?: string;
    /** A fresh UUID v4 drawn by the shell, for the rare step that needs a new id. */
    fresh?: string;
  }
  | { kind: "oversize"; conn: number; now: number; bytes: number }
  | { kind: "closed"; conn: number; now: number }
  /**
   * Frames for a local user that never reached their socket: it closed, or was cut as too slow, first. `frame` is
   * a USER_DELIVER the shell could not hand over; `stored` counts rows of the user's offline queue it was sending
   * and did not (they are still in the store).
   */
  | { kind: "undelivered"; conn: number; now: number; userId: string; frame?: Envelope; stored?: number }
  | { kind: "tick"; now: number }
  /** The answer to a `probe` effect: the server's `software` ("" when it has none or did not answer). */
  | {
    kind: "software";
    now: number;
    serverId: string;
    software: string;
    /** The server answered only over https: it serves TLS, so redials use wss://. */
    tls?: boolean;
  }
  /** The shell created or adopted the channel key. */
  | { kind: "channelReady"; now: number; version: number; creatorPub: string }
  /** Creating or adopting the channel key failed. */
  | { kind: "channelFailed"; now: number; reason: string };

/** A row change for the store. */
export type PersistOp =
  | { op: "upsertUser"; user: UserRecord }
  | { op: "pinServer"; server: ServerRecord }
  | { op: "setServerId"; serverId: string }
  | { op: "setHome"; userId: string; serverId: string }
  /** Queue a frame (USER_DELIVER, unsigned) for an offline local user. */
  | { op: "enqueue"; userId: string; frame: Envelope; now: number }
  /** Keep a SERVER_DELIVER (unsigned) for a server that is unreachable now. */
  | { op: "outbox"; serverId: string; frame: Envelope; now: number }
  | { op: "channel"; version: number; creatorPub: string }
  | { op: "acceptRef"; ref: string; now: number }
  /** Pin a user's key (PROFILE §16), or replace a non-deriving pin by the key that derives the id. */
  | { op: "pinUser"; userId: string; pubkey: string; now: number }
  /** Keep a seen-cache key until `exp` across restarts (PROFILE §16 replays). */
  | { op: "seen"; key: string; exp: number }
  | { op: "member"; memberId: string; wrappedKey: string; now: number };

/**
 * Crypto the shell performs on a frame before signing it, with the channel private key it holds:
 * - `welcome`: `payload.public_channel.wrapped_key` = the channel key wrapped for `forKey`;
 * - `updated`: `payload.wraps[0].wrapped_key` = the channel key wrapped for `forKey`;
 * - `keyShare`: `payload.shares[0].wrapped_public_channel_key` wrapped for `forKey`, and `content_sig` made with
 *   the channel key over PROFILE §4's key-share form.
 */
export type Seal = { kind: "welcome" | "updated" | "keyShare"; forKey: string };

/** Log levels, most verbose first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Intents the shell carries out, in order. */
export type Effect =
  | { kind: "send"; conn: number; frame: AnyEnvelope | Envelope; sign: boolean; seal?: Seal }
  | { kind: "close"; conn: number; code: number; reason: string }
  /**
   * Open a WebSocket to `scheme://host:port path` (see {@linkcode endpointUrl}) after `afterMs`; give up when it
   * has not opened within `timeoutMs`. Answer with `connected` (with `dial: token`) or `dialFailed`.
   */
  | {
    kind: "dial";
    token: number;
    host: string;
    port: number;
    scheme: "ws" | "wss";
    /** URL path of the endpoint ("" for the root). */
    path: string;
    afterMs: number;
    timeoutMs: number;
  }
  /** Send the user's queued frames kept since `notBefore` (older ones have expired) in order, signed; delete them. */
  | { kind: "deliverQueued"; conn: number; userId: string; notBefore: number }
  /**
   * Send the frames kept for a server that is linked again. With `confirm` false (a server that does not speak
   * the ACK extension) drop `payload.ack` and delete the rows once sent: handing them to the link is delivery.
   */
  | { kind: "flushOutbox"; conn: number; serverId: string; confirm: boolean; notBefore: number }
  /** Every outbox frame for this server was handed to its live link and it will not ACK: delete them. */
  | { kind: "outboxHanded"; serverId: string }
  /** Read `software` from the server's /.well-known/socp, answer with a `software` event. */
  | { kind: "probe"; serverId: string; url: string }
  /** The server confirmed it holds an outbox frame (ACK msg_ref): delete that row. */
  | { kind: "outboxAcked"; serverId: string; msgRef: string }
  /** Create a new channel key pair (we are the first server of a network). */
  | { kind: "createChannel" }
  /** Unwrap and keep the channel key a welcome carried (wrapped under our server key). */
  | { kind: "adoptChannel"; version: number; creatorPub: string; wrappedKey: string }
  | { kind: "persist"; op: PersistOp }
  | { kind: "log"; level: LogLevel; event: string; fields: Record<string, string | number | boolean> };

/** The URL a dial effect names: `ws://host:port/path` or `wss://…` (an IPv6 host in brackets). */
export function endpointUrl(d: { host: string; port: number; scheme: "ws" | "wss"; path: string }): string {
  return `${d.scheme}://${d.host.includes(":") ? `[${d.host}]` : d.host}:${d.port}${d.path}`;
}

/** The reducer's result. */
export interface Step {
  /** The state after the event. */
  state: State;
  /** What the shell must do, in order. */
  effects: Effect[];
}
