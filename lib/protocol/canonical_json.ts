/**
 * Canonical JSON as PROFILE §3 defines it: keys sorted by code point at every depth, `,` and `:` separators
 * without spaces, strings escaped like Python's `json.dumps(..., ensure_ascii=True)`, integers in decimal.
 * The byte-identical output of `json.dumps(obj, sort_keys=True, separators=(",",":"))`.
 *
 * @example
 * ```ts
 * canonicalJson({ b: "é", a: 1 }); // '{"a":1,"b":"\\u00e9"}'
 * canonicalJson({ b: "é", a: 1 }, { ascii: false }); // '{"a":1,"b":"é"}'
 * ```
 * @module
 */

/** A JSON value as JSON.parse produces it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Options for {@linkcode canonicalJson}. */
export interface CanonicalOptions {
  /** Escape every non-ASCII character as `\uXXXX` (default true, Python's ensure_ascii). */
  ascii?: boolean;
}

const SHORT: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
  "\b": "\\b",
  "\f": "\\f",
};

function hex4(code: number): string {
  return "\\u" + code.toString(16).padStart(4, "0");
}

/** Quote a string the way Python's json module does (ensure_ascii on or off). */
export function quoteString(s: string, ascii = true): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let rep: string | undefined;
    if (c < 0x20 || c === 0x22 || c === 0x5c) rep = SHORT[s[i]] ?? hex4(c);
    else if (ascii && c > 0x7e) rep = hex4(c); // Python escapes DEL (0x7f) too
    if (rep !== undefined) {
      out += s.slice(start, i) + rep;
      start = i + 1;
    }
  }
  return out + s.slice(start) + '"';
}

/** Compare two strings by Unicode code point (Python's sort order), not by UTF-16 code unit. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (astral code points) sort above every BMP character, though their code units are lower.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

function numberText(n: number): string {
  if (!Number.isFinite(n)) throw new TypeError("canonical JSON cannot hold NaN or Infinity");
  return Number.isInteger(n) && Math.abs(n) < 1e21 ? BigInt(n).toString() : String(n);
}

function write(v: unknown, ascii: boolean): string {
  if (v === null) return "null";
  switch (typeof v) {
    case "string":
      return quoteString(v, ascii);
    case "number":
      return numberText(v);
    case "boolean":
      return v ? "true" : "false";
    case "object": {
      if (Array.isArray(v)) return "[" + v.map((x) => write(x, ascii)).join(",") + "]";
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareCodePoints);
      return "{" + keys.map((k) => quoteString(k, ascii) + ":" + write(obj[k], ascii)).join(",") + "}";
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof v}`);
  }
}

/** Serialise `value` canonically (see module docs). Throws TypeError on values JSON cannot hold. */
export function canonicalJson(value: unknown, options: CanonicalOptions = {}): string {
  return write(value, options.ascii ?? true);
}

/**
 * The byte strings a received payload's `sig` is checked against, in the order of PROFILE §3: canonical
 * (ASCII escapes), canonical with raw UTF-8, and the payload re-serialised in arrival key order.
 * Duplicates are removed, so an ASCII-only payload in sorted order yields one candidate.
 */
export function signaturePreimages(payload: unknown): Uint8Array[] {
  const enc = new TextEncoder();
  const forms = [canonicalJson(payload), canonicalJson(payload, { ascii: false }), JSON.stringify(payload)];
  return [...new Set(forms)].map((f) => enc.encode(f));
}
