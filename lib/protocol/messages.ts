/**
 * Every SOCP v1.3 message type and its payload shape (SOCP-1.3 §5, PROFILE §5–§12), with a validator each.
 *
 * @example
 * ```ts
 * PAYLOADS.MSG_DIRECT({ ciphertext: "x", sender_pub: "k", content_sig: "s" }, "payload"); // the payload
 * ```
 * @module
 */
import {
  anyObject,
  anything,
  array,
  boolean,
  type Check,
  integer,
  literal,
  nullable,
  object,
  optional,
  string,
} from "./schema.ts";

/** Largest string a key field may hold (PEM text of an RSA-4096 key is ~800 characters). */
const KEY = string(1, 16_384);
/** Ciphertexts and signatures: base64url text, bounded by the frame limit anyway. */
const B64 = string(0, 64 * 1024 * 1024);
const ID = string(1, 128);
const HOST = string(1, 255);
const PORT = integer(0, 65535);

/** `software` is optional: ours say `socp-deno/…` (PROFILE §15: who speaks the outbox ACK extension). */
const SOFTWARE = optional(string(0, 256));
const serverIntro = object({ host: HOST, port: PORT, pubkey: KEY, software: SOFTWARE });
const serverEntry = object({ server_id: ID, host: HOST, port: PORT, pubkey: KEY });
const clientEntry = object({
  user_id: ID,
  host: optional(string(0, 255)),
  port: optional(PORT),
  pubkey: KEY,
});

/** Payload validators by message type. */
export const PAYLOADS = {
  SERVER_HELLO_JOIN: serverIntro,
  SERVER_HELLO_LINK: serverIntro,
  /** Ours: `{host, port, pubkey}`. Deployed (PROFILE §15): `{server_id, user_locations}` without an address. */
  SERVER_ANNOUNCE: object({
    host: optional(HOST),
    port: optional(PORT),
    pubkey: optional(KEY),
    server_id: optional(ID),
    user_locations: optional(anyObject),
    software: SOFTWARE,
  }),
  /**
   * PROFILE §12 and §15: `assigned_id` may be absent or null; the introducer's key in `server_pub` or `pubkey`;
   * its address in `host`/`port`; `snapshot.user_locations` in place of `clients[]`.
   */
  SERVER_WELCOME: object({
    assigned_id: optional(nullable(ID)),
    servers: optional(array(serverEntry, 4096)),
    clients: optional(array(clientEntry, 1_000_000)),
    server_pub: optional(KEY),
    pubkey: optional(KEY),
    host: optional(HOST),
    port: optional(PORT),
    /** Some introducers name themselves here (their `from` may be a generic name). */
    server_id: optional(ID),
    snapshot: optional(anyObject),
    software: SOFTWARE,
    public_channel: optional(object({ version: integer(0), creator_pub: KEY, wrapped_key: B64 })),
  }),
  /**
   * PROFILE §15 dial-back links: the first frame of an introducer that dials its joiner back (no hello), and its
   * presence snapshot on a link. `users` entries are read one by one (a malformed entry is skipped, not fatal).
   */
  SERVER_PRESENCE_SYNC: object({ server_id: optional(ID), users: optional(array(anything, 100_000)) }),
  USER_ADVERTISE: object({ user_id: ID, server_id: ID, meta: optional(anyObject), pubkey: optional(KEY) }),
  USER_REMOVE: object({ user_id: ID, server_id: ID }),
  SERVER_DELIVER: object({
    user_id: ID,
    ciphertext: B64,
    sender: ID,
    sender_pub: KEY,
    content_sig: B64,
    orig_ts: optional(integer(0)),
    /** PROFILE §15: the original ts under another name (read like `orig_ts`; ours carry both). */
    cts: optional(integer(0)),
    /**
     * PROFILE §16: when a server sends a kept (outbox) frame later, the time it sends it, signed with the rest of
     * the payload; receivers judge the frame's freshness on it. Left out of the replay digest (inbound.ts).
     */
    fwd_ts: optional(integer(0)),
    /** This node's extension: ask the receiving server to ACK once it holds the frame (hop-by-hop, PROFILE §10). */
    ack: optional(boolean),
  }),
  HEARTBEAT: anyObject,
  USER_HELLO: object({
    client: optional(string(0, 256)),
    pubkey: KEY,
    enc_pubkey: optional(KEY),
    meta: optional(anyObject),
    ts: optional(integer(0)),
    nonce: optional(string(0, 256)),
  }),
  MSG_DIRECT: object({ ciphertext: B64, sender_pub: KEY, content_sig: B64 }),
  /** PROFILE §15: `original_ts` (when the envelope `ts` is the delivery time; null: lost) is read by clients. */
  USER_DELIVER: object({
    ciphertext: B64,
    sender: ID,
    sender_pub: KEY,
    content_sig: B64,
    original_ts: optional(nullable(integer(0))),
  }),
  PUBLIC_CHANNEL_ADD: object({ add: array(ID, 100_000), if_version: integer(0) }),
  /** Ours carry `wraps`; deployed servers send `{version, added}` or `{version, removed}` (PROFILE §15). */
  PUBLIC_CHANNEL_UPDATED: object({
    version: integer(0),
    wraps: optional(array(object({ member_id: ID, wrapped_key: B64 }), 100_000)),
    added: optional(array(anything, 100_000)),
    removed: optional(array(anything, 100_000)),
  }),
  PUBLIC_CHANNEL_KEY_SHARE: object({
    shares: array(object({ member: ID, wrapped_public_channel_key: B64 }), 100_000),
    creator_pub: KEY,
    content_sig: B64,
  }),
  MSG_PUBLIC_CHANNEL: object({ ciphertext: B64, sender_pub: KEY, content_sig: B64 }),
  FILE_START: object({
    file_id: ID,
    name: string(1, 1024),
    size: integer(0),
    sha256: string(64, 64),
    mode: literal("dm", "public"),
    content_sig: optional(B64),
  }),
  FILE_CHUNK: object({ file_id: ID, index: integer(0), ciphertext: B64 }),
  FILE_END: object({ file_id: ID }),
  ACK: object({ msg_ref: string(0, 1024) }),
  ERROR: object({ code: string(1, 64), detail: optional(string(0, 4096)) }),
  CTRL_CLOSE: anyObject,
} as const;

/** The message types this node understands (case-sensitive). */
export type MessageType = keyof typeof PAYLOADS;

/** The payload type of message type `T`. */
export type PayloadOf<T extends MessageType> = (typeof PAYLOADS)[T] extends Check<infer P> ? P : never;

/** Type aliases accepted on input (PROFILE §5). */
export const TYPE_ALIASES: Readonly<Record<string, MessageType>> = { MSG_PRIVATE: "MSG_DIRECT" };

/** True when `t` names a message type (after aliasing). */
export function isMessageType(t: string): t is MessageType {
  return Object.hasOwn(PAYLOADS, t);
}

/** The six standard error codes (SOCP-1.3 §8). */
export type ErrorCode =
  | "USER_NOT_FOUND"
  | "INVALID_SIG"
  | "BAD_KEY"
  | "TIMEOUT"
  | "UNKNOWN_TYPE"
  | "NAME_IN_USE";
