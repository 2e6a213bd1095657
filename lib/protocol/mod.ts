/**
 * The SOCP v1.3 wire layer, pure and total (no I/O, no clock): envelope parsing and serialisation, the message
 * types and their payload shapes, canonical JSON, base64url, RSA public-key forms, signature preimages and
 * `msg_ref`. Every parser returns an error value on hostile input; none throws.
 *
 * @example Parse a frame and serialise it back
 * ```ts
 * import { parseFrame, serializeEnvelope } from "./mod.ts";
 *
 * const text = JSON.stringify({
 *   type: "HEARTBEAT",
 *   from: "server-1",
 *   to: "server-2",
 *   ts: 1700000000000,
 *   payload: {},
 *   sig: "",
 * });
 * const r = parseFrame(text);
 * if (!r.ok) throw new Error(r.error.detail);
 * if (serializeEnvelope(r.envelope) !== text) throw new Error("not the same frame back");
 *
 * // Hostile input is an error value, never a throw.
 * const bad = parseFrame('{"type":"NO_SUCH_TYPE"}');
 * if (bad.ok || bad.error.code !== "UNKNOWN_TYPE") throw new Error("an unknown type must be refused");
 * ```
 *
 * @example Canonical JSON and base64url
 * ```ts
 * import { canonicalJson, decodeBase64Url, encodeBase64Url } from "./mod.ts";
 *
 * const expect = (ok: boolean, what: string) => {
 *   if (!ok) throw new Error(what);
 * };
 * expect(canonicalJson({ b: 1, a: [true, null] }) === '{"a":[true,null],"b":1}', "keys sorted, no spaces");
 * expect(encodeBase64Url(new Uint8Array([251, 255])) === "-_8", "URL-safe alphabet, no padding");
 * expect(decodeBase64Url("-_8")?.join() === "251,255", "decodes back");
 * expect(decodeBase64Url("not base64url!") === null, "bad input is null, not a throw");
 * ```
 * @module
 */
export { decodeBase64Url, encodeBase64Url, isBase64Url } from "./base64url.ts";
export {
  canonicalJson,
  canonicalJsonResult,
  type CanonicalOptions,
  type CanonicalResult,
  compareCodePoints,
  type Json,
  MAX_JSON_DEPTH,
  quoteString,
  signaturePreimages,
} from "./canonical_json.ts";
export {
  type AnyEnvelope,
  type Envelope,
  isServerId,
  isUuid,
  jsonProblem,
  parseFrame,
  parseObject,
  type ParseOptions,
  type ParseResult,
  type ProtocolError,
  serializeEnvelope,
  variantPayload,
  withFrameId,
} from "./envelope.ts";
export {
  type ErrorCode,
  isMessageType,
  type MessageType,
  type PayloadOf,
  PAYLOADS,
  TYPE_ALIASES,
} from "./messages.ts";
export type { Check, Invalid, Optional } from "./schema.ts";
export {
  bytesEqual,
  checkRsaKey,
  type DecodedKey,
  decodePublicKey,
  encodeSpki,
  type KeyForm,
  type KeyPolicy,
  keyPolicy,
  parseAcceptableKey,
  pkcs1ToSpki,
  type PublicKeyInfo,
  sameKeyMaterial,
  spkiToB64Pem,
  spkiToPem,
} from "./keys.ts";
export {
  canonicalPayloadBytes,
  type DmFields,
  dmPreimage,
  dmPreimageVariants,
  fileStartPreimage,
  keySharePreimage,
  type PublicFields,
  publicPreimage,
  publicPreimageVariants,
} from "./preimages.ts";
export { msgRef } from "./msg_ref.ts";
export { sha256, toHex } from "./sha256.ts";
export { derivesId, deriveUserId, userIdFromSpki } from "./user_id.ts";
