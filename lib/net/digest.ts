/**
 * Synchronous SHA-256 for the node's effect executor, where a digest must be ready before the next effect runs
 * (the outbox reference stored with a queued frame). Deno-only (node:crypto); browser-safe code uses the
 * WebCrypto `sha256` of lib/crypto/rsa.ts.
 *
 * @module
 */
import { createHash } from "node:crypto";

/** SHA-256 of bytes or UTF-8 text, synchronously. */
export function sha256Sync(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/** Lowercase hex of SHA-256, synchronously. */
export function sha256HexSync(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}
