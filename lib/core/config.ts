/**
 * The reducer's configuration: limits (PROFILE §11), federation settings (PROFILE §12) and what the node knows
 * about itself. Pure data.
 *
 * @module
 */

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
