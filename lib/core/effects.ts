/**
 * What crosses between the reducer and the shell: the events the shell feeds in and the effects it carries out.
 * Pure data.
 *
 * @module
 */
import type { AnyEnvelope, Envelope, ParseResult } from "../protocol/envelope.ts";
import type { ServerRecord, UserRecord } from "./records.ts";

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
  /**
   * The clock: every time-driven rule whose time has come fires (timers.ts). Harmless at any time; the shell sends
   * one at `nextDeadline(state)`.
   */
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
