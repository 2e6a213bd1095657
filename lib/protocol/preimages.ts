/**
 * The byte strings end-to-end signatures cover (PROFILE §4, §9) and the ACK `msg_ref` input (§10).
 * Our clients sign the first form of each list; verifiers try every form in order.
 *
 * @example
 * ```ts
 * const m = dmPreimage({ ciphertext: "abc", from: "u1", to: "u2", ts: 5 }); // UTF-8 of "abcu1u25"
 * ```
 * @module
 */
import { decodeBase64Url } from "./base64url.ts";
import { canonicalJson } from "./canonical_json.ts";
import { concatBytes } from "./der.ts";

const enc = new TextEncoder();

/** The fields a DM's content_sig binds. */
export interface DmFields {
  /** The DM's ciphertext (base64url). */
  ciphertext: string;
  /** Sender user id. */
  from: string;
  /** Recipient user id. */
  to: string;
  /** The frame's `ts`. */
  ts: number;
}

/** The fields a public message's content_sig binds. */
export interface PublicFields {
  /** The message's ciphertext (base64url). */
  ciphertext: string;
  /** Sender user id. */
  from: string;
  /** The frame's `ts`. */
  ts: number;
}

/** The form our clients sign for a DM: UTF-8 of `ciphertext + from + to + decimal(ts)`. */
export function dmPreimage(f: DmFields): Uint8Array {
  return enc.encode(f.ciphertext + f.from + f.to + String(f.ts));
}

/** The form our clients sign for a public message: UTF-8 of `ciphertext + from + decimal(ts)`. */
export function publicPreimage(f: PublicFields): Uint8Array {
  return enc.encode(f.ciphertext + f.from + String(f.ts));
}

function rawVariant(ciphertext: string, tail: string): Uint8Array | null {
  const ct = decodeBase64Url(ciphertext);
  return ct ? concatBytes(ct, enc.encode(tail)) : null;
}

/** Every DM preimage a verifier accepts, in PROFILE §4 order. */
export function dmPreimageVariants(f: DmFields): Uint8Array[] {
  const out = [dmPreimage(f)];
  const raw = rawVariant(f.ciphertext, f.from + f.to + String(f.ts));
  if (raw) out.push(raw);
  out.push(enc.encode(canonicalJson({ ciphertext: f.ciphertext, from: f.from, to: f.to, ts: f.ts })));
  return out;
}

/** Every public-message preimage a verifier accepts, in PROFILE §4 order. */
export function publicPreimageVariants(f: PublicFields): Uint8Array[] {
  const out = [publicPreimage(f)];
  const raw = rawVariant(f.ciphertext, f.from + String(f.ts));
  if (raw) out.push(raw);
  out.push(enc.encode(canonicalJson({ ciphertext: f.ciphertext, from: f.from, ts: f.ts })));
  return out;
}

/** Key-share preimage: `canonical_json(shares) + creator_pub`. */
export function keySharePreimage(shares: unknown, creatorPub: string): Uint8Array {
  return enc.encode(canonicalJson(shares) + creatorPub);
}

/** FILE_START preimage: `file_id + sha256 + decimal(size) + from + to + decimal(ts)`; public mode omits `to`. */
export function fileStartPreimage(
  f: { file_id: string; sha256: string; size: number; from: string; to?: string; ts: number },
): Uint8Array {
  return enc.encode(f.file_id + f.sha256 + String(f.size) + f.from + (f.to ?? "") + String(f.ts));
}

/** The canonical payload bytes that `sig`, the seen cache and `msg_ref` are computed over. */
export function canonicalPayloadBytes(payload: unknown): Uint8Array {
  return enc.encode(canonicalJson(payload));
}
