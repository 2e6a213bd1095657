/**
 * Self-certifying user ids (PROFILE §16): the first 16 bytes of SHA-256(DER SPKI of the user's `pubkey`), with
 * byte 6 set to `(b & 0x0f) | 0x40` and byte 8 to `(b & 0x3f) | 0x80`, written as a lowercase UUID (a valid
 * UUID v4 for every deployed server). Anyone can check `id == deriveUserId(pubkey)`; a pair that matches is
 * verified by construction. Whatever encoding the key arrives in (PROFILE §1), the id is derived from its DER
 * SPKI, so every encoding of one key derives the same id.
 *
 * @example
 * ```ts
 * import { deriveUserId, derivesId, userIdFromSpki } from "./user_id.ts";
 *
 * const id = userIdFromSpki(new Uint8Array(550)); // any bytes: the id is a UUID v4 of their hash
 * if (!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(id)) throw new Error(id);
 * if (deriveUserId("not a key") !== undefined) throw new Error("a bad key derives nothing");
 * if (derivesId("not a key", id)) throw new Error("never true for a bad key");
 * ```
 * @module
 */
import { decodePublicKey } from "./keys.ts";
import { sha256, toHex } from "./sha256.ts";

/** The self-certifying id of DER SPKI bytes. */
export function userIdFromSpki(spki: Uint8Array): string {
  const b = sha256(spki).slice(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The self-certifying id of a public key in any accepted form, or undefined when the key does not decode. */
export function deriveUserId(pubkey: string): string | undefined {
  const d = decodePublicKey(pubkey);
  return d.ok ? userIdFromSpki(d.key.spki) : undefined;
}

/** True when `id` is the self-certifying id of `pubkey` (PROFILE §16: verified by construction). */
export function derivesId(pubkey: string, id: string): boolean {
  return deriveUserId(pubkey) === id;
}

/**
 * A key's fingerprint for people to compare: SHA-256 of its DER SPKI, the first 16 bytes as 8 groups of 4 hex
 * digits (`"3f0e 5f0a …"`). Every encoding of one key has one fingerprint; "(not a key)" when it does not decode.
 */
export function keyFingerprint(pubkey: string): string {
  const d = decodePublicKey(pubkey);
  if (!d.ok) return "(not a key)";
  return toHex(sha256(d.key.spki).slice(0, 16)).match(/.{4}/g)!.join(" ");
}
