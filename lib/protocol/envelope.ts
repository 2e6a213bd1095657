/**
 * The SOCP envelope and the frame parser: text in, typed envelope or typed {@linkcode ProtocolError} out.
 * Never throws on bad input.
 *
 * @example
 * ```ts
 * const r = parseFrame('{"type":"HEARTBEAT","from":"a","to":"b","ts":1,"payload":{}}');
 * if (r.ok) r.envelope.type; // "HEARTBEAT"
 * ```
 * @module
 */
import {
  type ErrorCode,
  isMessageType,
  type MessageType,
  type PayloadOf,
  PAYLOADS,
  TYPE_ALIASES,
} from "./messages.ts";
import { Invalid } from "./schema.ts";
import { MAX_JSON_DEPTH } from "./canonical_json.ts";

/** A frame of message type `T`. */
export interface Envelope<T extends MessageType = MessageType> {
  /** The message type. */
  type: T;
  /** Sender: a user id (UUID) or server id. */
  from: string;
  /** Recipient: a user id, server id, "public" or "*". */
  to: string;
  /** Sender's time, ms since the epoch. */
  ts: number;
  /** The type's payload. */
  payload: PayloadOf<T>;
  /** base64url PSS signature over the canonical payload; `""` or absent when unsigned. */
  sig?: string;
}

/** Any envelope, discriminated by `type`. */
export type AnyEnvelope = { [T in MessageType]: Envelope<T> }[MessageType];

/** Why a frame was refused by the parser. */
export interface ProtocolError {
  /** The ERROR code to answer with. */
  code: ErrorCode;
  /** What is wrong, for a human. */
  detail: string;
  /** The frame's `type`/`from` when they could be read (for error replies and logs). */
  type?: string;
  /** The frame's `from`, when it could be read. */
  from?: string;
}

/**
 * Result of {@linkcode parseFrame}. `signed` is the payload exactly as received when the parser read a deployed
 * field-name variant into our form (PROFILE §15): signatures are checked over `signed`, never over the
 * normalised `envelope.payload`.
 */
export type ParseResult =
  | { ok: true; envelope: AnyEnvelope; signed?: unknown }
  | { ok: false; error: ProtocolError };

/** Options of {@linkcode parseFrame}. */
export interface ParseOptions {
  /**
   * Also read the variants only clients meet (PROFILE §15): USER_ADVERTISE `{user, name, pubkey_b64u, via?}` and
   * USER_REMOVE `{user, via?}`. Servers never normalise what they may relay (the relayed frame keeps its own `sig`).
   */
  clientForms?: boolean;
}

function fail(detail: string, code: ErrorCode = "UNKNOWN_TYPE", o?: Record<string, unknown>): ParseResult {
  const error: ProtocolError = { code, detail };
  if (o && typeof o.type === "string") error.type = o.type.slice(0, 64);
  if (o && typeof o.from === "string") error.from = o.from.slice(0, 128);
  return { ok: false, error };
}

/** Parse one WebSocket text frame (a trailing newline is tolerated). */
export function parseFrame(text: string, options: ParseOptions = {}): ParseResult {
  let raw: unknown;
  try {
    raw = JSON.parse(text.endsWith("\n") ? text.replace(/\r?\n$/, "") : text);
  } catch (e) {
    return fail(`malformed JSON: ${(e as Error).message}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return fail("frame must be a JSON object");
  }
  return parseObject(raw as Record<string, unknown>, options);
}

/**
 * What makes a parsed frame unfit to be handled, or null: nesting deeper than {@linkcode MAX_JSON_DEPTH}, or a
 * number that is not a safe integer (SOCP payloads carry only integers; `1e999` parses as Infinity, which no
 * signature can cover). Iterative, so any depth that `JSON.parse` accepted is walked without recursion.
 */
export function jsonProblem(root: unknown): string | null {
  const stack: [unknown, number, string][] = [[root, 0, ""]];
  while (stack.length > 0) {
    const [v, depth, path] = stack.pop()!;
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) {
        return `numbers must be integers of at most 2^53-1 in magnitude (${path || "frame"} is ${
          String(v).slice(0, 32)
        })`;
      }
    } else if (v !== null && typeof v === "object") {
      if (depth >= MAX_JSON_DEPTH) return `frame nests deeper than ${MAX_JSON_DEPTH} levels (at ${path})`;
      if (Array.isArray(v)) {
        const at = `${path}[]`;
        for (const x of v) stack.push([x, depth + 1, at]);
      } else {
        for (const [k, x] of Object.entries(v)) {
          stack.push([x, depth + 1, path ? `${path}.${k.slice(0, 32)}` : k.slice(0, 32)]);
        }
      }
    }
  }
  return null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/**
 * A deployed field-name variant of `payload` read into our form (PROFILE §15), or undefined when it is ours (or
 * not a variant we read). Total: every field is checked by the type's validator afterwards.
 */
export function variantPayload(
  type: MessageType,
  payload: unknown,
  from: unknown,
  options: ParseOptions = {},
): Record<string, unknown> | undefined {
  if (!isRecord(payload)) return undefined;
  const p = payload;
  if (type === "USER_HELLO" && p.pubkey === undefined && typeof p.pubkey_b64u === "string") {
    return { ...p, pubkey: p.pubkey_b64u };
  }
  if (!options.clientForms || p.user_id !== undefined || typeof p.user !== "string") return undefined;
  const home = typeof p.via === "string" && p.via ? p.via : from;
  if (type === "USER_ADVERTISE") {
    const out: Record<string, unknown> = { user_id: p.user, server_id: home };
    if (typeof p.name === "string") out.meta = { display_name: p.name };
    if (p.pubkey_b64u !== undefined) out.pubkey = p.pubkey_b64u;
    else if (p.pubkey !== undefined) out.pubkey = p.pubkey;
    return out;
  }
  if (type === "USER_REMOVE") return { user_id: p.user, server_id: home };
  return undefined;
}

/** Validate an already-parsed object as an envelope. */
export function parseObject(o: Record<string, unknown>, options: ParseOptions = {}): ParseResult {
  const bad = jsonProblem(o);
  if (bad) return fail(bad, "UNKNOWN_TYPE", o);
  if (typeof o.type !== "string") return fail("frame has no string field 'type'", "UNKNOWN_TYPE", o);
  const type = TYPE_ALIASES[o.type] ?? o.type;
  if (!isMessageType(type)) return fail(`unknown message type "${o.type.slice(0, 64)}"`, "UNKNOWN_TYPE", o);
  if (type === "CTRL_CLOSE") {
    // The standard shows CTRL_CLOSE as a bare {"type":"CTRL_CLOSE"}; fill what is missing.
    const envelope: Envelope<"CTRL_CLOSE"> = {
      type,
      from: typeof o.from === "string" ? o.from : "",
      to: typeof o.to === "string" ? o.to : "",
      ts: Number.isSafeInteger(o.ts) ? o.ts as number : 0,
      payload: o.payload && typeof o.payload === "object" ? o.payload as Record<string, unknown> : {},
    };
    return { ok: true, envelope };
  }
  if (typeof o.from !== "string" || o.from.length === 0 || o.from.length > 128) {
    return fail("'from' must be a string of 1 to 128 characters", "UNKNOWN_TYPE", o);
  }
  if (typeof o.to !== "string" || o.to.length > 256) return fail("'to' must be a string", "UNKNOWN_TYPE", o);
  if (typeof o.ts !== "number" || !Number.isSafeInteger(o.ts) || o.ts < 0) {
    return fail("'ts' must be a non-negative integer (milliseconds)", "UNKNOWN_TYPE", o);
  }
  if (o.sig !== undefined && o.sig !== null && typeof o.sig !== "string") {
    return fail("'sig' must be a string", "UNKNOWN_TYPE", o);
  }
  const variant = variantPayload(type, o.payload, o.from, options);
  const payload = PAYLOADS[type](variant ?? o.payload, "payload");
  if (payload instanceof Invalid) return fail(`${type}: ${payload.message}`, "UNKNOWN_TYPE", o);
  const envelope = { type, from: o.from, to: o.to, ts: o.ts, payload } as AnyEnvelope;
  if (typeof o.sig === "string") envelope.sig = o.sig;
  return variant ? { ok: true, envelope, signed: o.payload } : { ok: true, envelope };
}

/**
 * Serialise an envelope for the wire (field order as the standard lists them). `id` (PROFILE §15: a fresh random
 * UUID per frame sent, drawn by the shell) goes first when given; it is outside `sig`.
 */
export function serializeEnvelope(e: Envelope, id?: string): string {
  return JSON.stringify({
    ...(id === undefined ? {} : { id }),
    type: e.type,
    from: e.from,
    to: e.to,
    ts: e.ts,
    payload: e.payload,
    sig: e.sig ?? "",
  });
}

/**
 * A frame's wire text with a top-level `id` added (PROFILE §15 envelope ids): `text` is one serialized JSON object,
 * as {@linkcode serializeEnvelope} writes it, without an `id` of its own. Costs one string copy, so a text signed
 * and serialized once (a broadcast) still goes out with a fresh id on every connection.
 *
 * @example
 * ```ts
 * withFrameId('{"type":"HEARTBEAT"}', "6b1c0f1e-0000-4000-8000-000000000000");
 * // '{"id":"6b1c0f1e-0000-4000-8000-000000000000","type":"HEARTBEAT"}'
 * ```
 */
export function withFrameId(text: string, id: string): string {
  if (!text.startsWith("{")) return text;
  const rest = text.slice(1).trimStart();
  return `{"id":${JSON.stringify(id)}${rest.startsWith("}") ? "" : ","}${rest}`;
}

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** True for a UUID in 8-4-4-4-12 hex form (any version; user ids are compared as sent). */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** True for a server id we accept from peers: 1–128 printable characters (PROFILE §5). */
export function isServerId(s: string): boolean {
  return s.length >= 1 && s.length <= 128 && /^[\x21-\x7e]+$/.test(s);
}
