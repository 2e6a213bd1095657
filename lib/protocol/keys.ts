/**
 * Public-key codecs of PROFILE §1. A key string may arrive as base64url/base64 of DER SubjectPublicKeyInfo,
 * DER PKCS#1 RSAPublicKey, raw PEM text, or base64url of PEM text; every form is turned into DER SPKI bytes.
 * On output this node writes base64url(DER SPKI), or base64url(PEM text) to a peer that uses that form.
 * Pure: no crypto calls (WebCrypto imports the SPKI bytes in lib/crypto).
 *
 * @example
 * ```ts
 * const decoded = decodePublicKey(someKeyString);
 * if (decoded.ok) checkRsaKey(decoded.key, { minBits: 4096 }); // null when acceptable
 * ```
 * @module
 */
import { decodeBase64Url, encodeBase64Url } from "./base64url.ts";
import { children, concatBytes, encodeTlv, readTlv } from "./der.ts";

/** The textual form a key arrived in. */
export type KeyForm = "spki" | "pkcs1" | "pem" | "b64-pem";

/** A decoded RSA public key. */
export interface PublicKeyInfo {
  /** DER SubjectPublicKeyInfo bytes (what WebCrypto's "spki" import takes). */
  spki: Uint8Array;
  /** Big-endian modulus without leading zero bytes. */
  modulus: Uint8Array;
  /** Big-endian public exponent without leading zero bytes. */
  exponent: Uint8Array;
  /** Modulus size in bits. */
  bits: number;
  form: KeyForm;
}

/** Result of {@linkcode decodePublicKey}. */
export type DecodedKey = { ok: true; key: PublicKeyInfo } | { ok: false; reason: string };

// 1.2.840.113549.1.1.1 rsaEncryption
const RSA_OID = new Uint8Array([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]);
const ALG_ID = encodeTlv(0x30, concatBytes(RSA_OID, new Uint8Array([0x05, 0x00])));
const PEM_PREFIX_B64 = "LS0tLS1CRUdJTi"; // base64 of "-----BEGIN"

function stripZeros(b: Uint8Array): Uint8Array {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

function bitLength(n: Uint8Array): number {
  if (n.length === 0 || (n.length === 1 && n[0] === 0)) return 0;
  return (n.length - 1) * 8 + (32 - Math.clz32(n[0]));
}

function parsePkcs1(der: Uint8Array): { modulus: Uint8Array; exponent: Uint8Array } | null {
  const seq = readTlv(der, 0);
  if (!seq || seq.tag !== 0x30 || seq.end !== der.length) return null;
  const parts = children(der, seq);
  if (!parts || parts.length !== 2 || parts[0].tag !== 0x02 || parts[1].tag !== 0x02) return null;
  const n = der.subarray(parts[0].start, parts[0].end);
  const e = der.subarray(parts[1].start, parts[1].end);
  if (n.length === 0 || e.length === 0 || (n[0] & 0x80) || (e[0] & 0x80)) return null; // negative
  return { modulus: stripZeros(n), exponent: stripZeros(e) };
}

function parseSpki(der: Uint8Array): { modulus: Uint8Array; exponent: Uint8Array } | null {
  const seq = readTlv(der, 0);
  if (!seq || seq.tag !== 0x30 || seq.end !== der.length) return null;
  const parts = children(der, seq);
  if (!parts || parts.length !== 2 || parts[0].tag !== 0x30 || parts[1].tag !== 0x03) return null;
  const alg = children(der, parts[0]);
  if (!alg || alg.length < 1 || alg[0].tag !== 0x06) return null;
  const oid = der.subarray(alg[0].start - 2, alg[0].end);
  if (oid.length !== RSA_OID.length || !oid.every((b, i) => b === RSA_OID[i])) return null;
  const bits = der.subarray(parts[1].start, parts[1].end);
  if (bits.length < 2 || bits[0] !== 0) return null;
  return parsePkcs1(bits.subarray(1));
}

/** Wrap a PKCS#1 RSAPublicKey into DER SubjectPublicKeyInfo. */
export function pkcs1ToSpki(pkcs1: Uint8Array): Uint8Array {
  const bitString = encodeTlv(0x03, concatBytes(new Uint8Array([0]), pkcs1));
  return encodeTlv(0x30, concatBytes(ALG_ID, bitString));
}

function pemBody(pem: string): { label: string; der: Uint8Array } | null {
  const m = /^-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=_\-\s]+?)\s*-----END \1-----\s*$/.exec(pem.trim());
  if (!m) return null;
  const der = decodeBase64Url(m[2].replace(/\s+/g, ""));
  return der ? { label: m[1], der } : null;
}

function fromDer(der: Uint8Array, form: KeyForm, hint?: string): DecodedKey {
  if (hint !== "RSA PUBLIC KEY") {
    const spki = parseSpki(der);
    if (spki) return { ok: true, key: { spki: der, ...spki, bits: bitLength(spki.modulus), form } };
  }
  if (hint !== "PUBLIC KEY") {
    const p1 = parsePkcs1(der);
    if (p1) {
      return {
        ok: true,
        key: {
          spki: pkcs1ToSpki(der),
          ...p1,
          bits: bitLength(p1.modulus),
          form: form === "spki" ? "pkcs1" : form,
        },
      };
    }
  }
  return { ok: false, reason: "not an RSA public key (neither SubjectPublicKeyInfo nor PKCS#1)" };
}

/** Decode a public-key string in any of the accepted forms. Never throws. */
export function decodePublicKey(text: unknown): DecodedKey {
  if (typeof text !== "string" || text.length === 0) {
    return { ok: false, reason: "key is missing or not a string" };
  }
  if (text.length > 16384) return { ok: false, reason: "key text is too long" };
  let pemText: string | null = null;
  let form: KeyForm = "spki";
  if (text.trimStart().startsWith("-----BEGIN")) {
    pemText = text;
    form = "pem";
  } else if (text.startsWith(PEM_PREFIX_B64)) {
    const raw = decodeBase64Url(text);
    if (!raw) return { ok: false, reason: "key is not valid base64url" };
    pemText = new TextDecoder().decode(raw);
    form = "b64-pem";
  }
  if (pemText !== null) {
    const body = pemBody(pemText);
    if (!body) return { ok: false, reason: "malformed PEM key" };
    if (body.label !== "PUBLIC KEY" && body.label !== "RSA PUBLIC KEY") {
      return { ok: false, reason: `PEM label "${body.label}" is not a public key` };
    }
    return fromDer(body.der, form, body.label);
  }
  const der = decodeBase64Url(text);
  if (!der) return { ok: false, reason: "key is not valid base64url" };
  return fromDer(der, "spki");
}

/** Requirements a key must meet: RSA with `minBits`..`maxBits` modulus and e = 65537 (PROFILE §1). */
export interface KeyPolicy {
  /** Accepted modulus sizes in bits; default [4096]. The weak-keys lab mode adds 1024 and 2048. */
  allowedBits?: number[];
}

/**
 * The key policy of this node (PROFILE §1, §13): RSA-4096 only, or, in the weak-keys lab mode, also 1024, 2048
 * and 3072 bits. The one place that decides which key sizes are acceptable.
 */
export function keyPolicy(labWeakKeys: boolean): KeyPolicy {
  return { allowedBits: labWeakKeys ? [1024, 2048, 3072, 4096] : [4096] };
}

/** `null` when the key is acceptable, otherwise a human-readable reason (for `ERROR BAD_KEY`). */
export function checkRsaKey(key: PublicKeyInfo, policy: KeyPolicy = {}): string | null {
  const allowed = policy.allowedBits ?? [4096];
  if (!allowed.includes(key.bits)) {
    return `RSA key has a ${key.bits}-bit modulus; ${allowed.join(" or ")}-bit required`;
  }
  const e = key.exponent;
  if (!(e.length === 3 && e[0] === 1 && e[1] === 0 && e[2] === 1)) {
    return "RSA public exponent must be 65537";
  }
  return null;
}

/** Decode and check a key in one step: `{ok, key}` or `{ok:false, reason}`. */
export function parseAcceptableKey(text: unknown, policy: KeyPolicy = {}): DecodedKey {
  const d = decodePublicKey(text);
  if (!d.ok) return d;
  const bad = checkRsaKey(d.key, policy);
  return bad ? { ok: false, reason: bad } : d;
}

/** base64url(DER SPKI): the form this node emits. */
export function encodeSpki(spki: Uint8Array): string {
  return encodeBase64Url(spki);
}

/** PEM text ("-----BEGIN PUBLIC KEY-----") of DER SPKI bytes. */
export function spkiToPem(spki: Uint8Array): string {
  const b64 = encodeBase64Url(spki).replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  const lines = padded.match(/.{1,64}/g) ?? [];
  return `-----BEGIN PUBLIC KEY-----\n${lines.join("\n")}\n-----END PUBLIC KEY-----\n`;
}

/** base64url of PEM text: the form some deployed servers require from peers (PROFILE §1 mirroring). */
export function spkiToB64Pem(spki: Uint8Array): string {
  return encodeBase64Url(new TextEncoder().encode(spkiToPem(spki)));
}

/** True when two key strings hold the same RSA key material, whatever their encodings. */
export function sameKeyMaterial(a: string, b: string): boolean {
  if (a === b) return true;
  const x = decodePublicKey(a);
  const y = decodePublicKey(b);
  if (!x.ok || !y.ok) return false;
  return bytesEqual(x.key.modulus, y.key.modulus) && bytesEqual(x.key.exponent, y.key.exponent);
}

/** Constant-shape byte comparison. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}
