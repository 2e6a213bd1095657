/**
 * `msg_ref` (PROFILE §10): the reference an ACK gives to the frame it confirms, base64url (no padding) of the
 * SHA-256 of that frame's canonical payload (`canonicalPayloadBytes` of preimages.ts). The one place it is formed.
 * Pure: the caller hashes (WebCrypto in browser-safe code, synchronously in the node, the shell's digest of each
 * inbound frame in the reducer) and passes the digest, as bytes or lowercase hex.
 *
 * @example
 * ```ts
 * msgRef("00ff"); // "AP8"
 * ```
 * @module
 */
import { encodeBase64Url } from "./base64url.ts";

/** `msg_ref` of a frame from the SHA-256 digest of its canonical payload (bytes, or hex text). */
export function msgRef(digest: Uint8Array | string): string {
  if (typeof digest !== "string") return encodeBase64Url(digest);
  const bytes = new Uint8Array(digest.length >> 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digest.slice(i * 2, i * 2 + 2), 16);
  return encodeBase64Url(bytes);
}
