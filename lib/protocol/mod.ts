/**
 * The SOCP v1.3 wire layer, pure and total (no I/O, no clock): envelope parsing and serialisation, the message
 * types and their payload shapes, canonical JSON, base64url, RSA public-key forms, signature preimages and
 * `msg_ref`. Every parser returns an error value on hostile input; none throws.
 *
 * @example Parse a frame and serialise it back
 * ```ts
 * import assert from "node:assert/strict";
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
 * assert.ok(r.ok);
 * assert.equal(r.envelope.type, "HEARTBEAT");
 * assert.deepEqual(JSON.parse(serializeEnvelope(r.envelope)), JSON.parse(text));
 *
 * // Hostile input is an error value, never a throw.
 * const bad = parseFrame('{"type":"NO_SUCH_TYPE"}');
 * assert.equal(bad.ok, false);
 * ```
 *
 * @example Canonical JSON and base64url
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalJson, decodeBase64Url, encodeBase64Url } from "./mod.ts";
 *
 * assert.equal(canonicalJson({ b: 1, a: [true, null] }), '{"a":[true,null],"b":1}');
 * assert.equal(encodeBase64Url(new Uint8Array([251, 255])), "-_8");
 * assert.deepEqual(decodeBase64Url("-_8"), new Uint8Array([251, 255]));
 * assert.equal(decodeBase64Url("not base64url!"), null);
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
  type ParseResult,
  type ProtocolError,
  serializeEnvelope,
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
