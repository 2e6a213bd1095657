/**
 * The reducer's vocabulary: configuration, state, the events the shell feeds in and the effects it carries
 * out. Pure data; no I/O.
 *
 * @module
 */
import type { AnyEnvelope, Envelope, ParseResult } from "../protocol/envelope.ts";
import type { ErrorCode, MessageType } from "../protocol/messages.ts";
import type { SeenCache } from "./dedupe.ts";

/** Limits of PROFILE §11 (all configurable). */
export interface Limits {
  maxFrameBytes: number;
  firstFrameMs: number;
  freshnessMs: number;
  ratePerSec: number;
  rateBurst: number;
  maxStrikes: number;
  seenTtlMs: number;
  seenMax: number;
  maxConnsPerAddr: number;
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
};

/** What the reducer needs to know about this node. */
export interface NodeConfig {
  serverId: string;
  /** Our public key, base64url(DER SPKI). */
  serverPub: string;
  limits: Limits;
  /** PROFILE §13 lab modes. */
  labWeakKeys: boolean;
  labReplay: boolean;
}

/** A connection's role once its first frame is accepted. */
export type Role = "pending" | "user";

/** Per-connection state. */
export interface Conn {
  id: number;
  addr: string;
  openedAt: number;
  role: Role;
  userId?: string;
  strikes: number;
  tokens: number;
  refilledAt: number;
  throttled: boolean;
}

/** A user bound to keys at this server (a `users` row). */
export interface UserRecord {
  userId: string;
  pubkey: string;
  encPubkey: string;
  meta: Record<string, unknown> | null;
  version: number;
}

/** Where an online user is, and the advert that says so. */
export interface Presence {
  userId: string;
  serverId: string;
  /** For local users the unsigned advert (the shell signs it, once per distinct payload). */
  advert: Envelope<"USER_ADVERTISE">;
}

/** The whole node state. `reduce` takes ownership and returns it (updated in place). */
export interface State {
  config: NodeConfig;
  conns: Map<number, Conn>;
  connsPerAddr: Map<string, number>;
  localUsers: Map<string, number>;
  users: Map<string, UserRecord>;
  presence: Map<string, Presence>;
  seen: SeenCache;
}

/** The outcome of the shell's signature check on a frame. */
export type SigCheck = "valid" | "invalid" | "absent";

/** Facts the shell established. */
export type Event =
  | { kind: "connected"; conn: number; addr: string; now: number }
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
  }
  | { kind: "oversize"; conn: number; now: number; bytes: number }
  | { kind: "closed"; conn: number; now: number }
  | { kind: "tick"; now: number };

/** A row change for the store. */
export type PersistOp = { op: "upsertUser"; user: UserRecord };

/** Log levels, most verbose first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Intents the shell carries out, in order. */
export type Effect =
  | { kind: "send"; conn: number; frame: AnyEnvelope | Envelope; sign: boolean }
  | { kind: "close"; conn: number; code: number; reason: string }
  | { kind: "persist"; op: PersistOp }
  | { kind: "log"; level: LogLevel; event: string; fields: Record<string, string | number | boolean> };

/** The reducer's result. */
export interface Step {
  state: State;
  effects: Effect[];
}

/** Shorthand for error replies. */
export interface ErrorReply {
  code: ErrorCode;
  detail: string;
  strike: boolean;
}

export type { MessageType };
