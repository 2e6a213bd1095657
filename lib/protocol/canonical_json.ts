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
  /**
   * Python's default separators `", "` and `": "` (default false): the spaced preimage of PROFILE §15, the
   * byte-identical output of `json.dumps(obj, sort_keys=True)`.
   */
  spaced?: boolean;
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

/** Deepest nesting of objects and arrays that canonical JSON (and a frame, see `parseFrame`) may have. */
export const MAX_JSON_DEPTH = 64;

/** Why a value cannot be written as canonical JSON. */
class NotCanonical {
  constructor(readonly message: string) {}
}

function numberText(n: number): string | NotCanonical {
  if (!Number.isFinite(n)) return new NotCanonical("canonical JSON cannot hold NaN or Infinity");
  return Number.isInteger(n) && Math.abs(n) < 1e21 ? BigInt(n).toString() : String(n);
}

function write(v: unknown, ascii: boolean, depth: number, spaced = false): string | NotCanonical {
  if (v === null) return "null";
  switch (typeof v) {
    case "string":
      return quoteString(v, ascii);
    case "number":
      return numberText(v);
    case "boolean":
      return v ? "true" : "false";
    case "object": {
      if (depth >= MAX_JSON_DEPTH) {
        return new NotCanonical(`canonical JSON nests at most ${MAX_JSON_DEPTH} levels deep`);
      }
      const parts: string[] = [];
      if (Array.isArray(v)) {
        for (const x of v) {
          const t = write(x, ascii, depth + 1, spaced);
          if (t instanceof NotCanonical) return t;
          parts.push(t);
        }
        return "[" + parts.join(spaced ? ", " : ",") + "]";
      }
      const obj = v as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareCodePoints);
      for (const k of keys) {
        const t = write(obj[k], ascii, depth + 1, spaced);
        if (t instanceof NotCanonical) return t;
        parts.push(quoteString(k, ascii) + (spaced ? ": " : ":") + t);
      }
      return "{" + parts.join(spaced ? ", " : ",") + "}";
    }
    default:
      return new NotCanonical(`canonical JSON cannot hold a ${typeof v}`);
  }
}

/** Result of {@linkcode canonicalJsonResult}: the text, or why the value has none. */
export type CanonicalResult = { ok: true; text: string } | { ok: false; error: string };

/**
 * Serialise `value` canonically (see module docs), as a total function: values JSON cannot hold (NaN,
 * Infinity, functions, …) and nesting deeper than {@linkcode MAX_JSON_DEPTH} give an error value, never a throw.
 *
 * @example
 * ```ts
 * canonicalJsonResult({ a: Infinity }); // { ok: false, error: "canonical JSON cannot hold NaN or Infinity" }
 * ```
 */
export function canonicalJsonResult(value: unknown, options: CanonicalOptions = {}): CanonicalResult {
  const t = write(value, options.ascii ?? true, 0, options.spaced ?? false);
  return t instanceof NotCanonical ? { ok: false, error: t.message } : { ok: true, text: t };
}

/**
 * Serialise `value` canonically (see module docs). For values this program built itself: it throws TypeError on
 * values JSON cannot hold. Anything that came from a peer goes through `parseFrame` first (which refuses such
 * values), or through {@linkcode canonicalJsonResult}.
 */
export function canonicalJson(value: unknown, options: CanonicalOptions = {}): string {
  const r = canonicalJsonResult(value, options);
  if (!r.ok) throw new TypeError(r.error);
  return r.text;
}

/**
 * Which preimage a signature verified under: our `canonical` form (also its raw-UTF-8 and arrival-order
 * variants, `compact`), or the `spaced` form of PROFILE §15. `either` is a payload whose canonical and spaced
 * texts are the same bytes (`{}`): it says nothing about the signer's form.
 */
export type PreimageForm = "canonical" | "compact" | "spaced" | "either";

/**
 * The preimages a received payload's `sig` is checked against, in the order of PROFILE §3 and §15: canonical
 * (ASCII escapes), canonical with raw UTF-8, the payload re-serialised in arrival key order, and the spaced form
 * (`json.dumps(payload, sort_keys=True)`). Duplicates are removed (the first form named keeps them).
 */
export function signatureForms(payload: unknown): { form: PreimageForm; bytes: Uint8Array }[] {
  const enc = new TextEncoder();
  const canonical = canonicalJson(payload);
  const spaced = canonicalJson(payload, { spaced: true });
  const forms: [PreimageForm, string][] = [
    [canonical === spaced ? "either" : "canonical", canonical],
    ["compact", canonicalJson(payload, { ascii: false })],
    ["compact", JSON.stringify(payload)],
    ["spaced", spaced],
  ];
  const seen = new Set<string>();
  return forms.filter(([, t]) => !seen.has(t) && seen.add(t)).map(([form, t]) => ({
    form,
    bytes: enc.encode(t),
  }));
}

/**
 * The byte strings a received payload's `sig` is checked against ({@linkcode signatureForms} without the labels).
 * Duplicates are removed, so an ASCII-only payload in sorted order yields the canonical and the spaced candidate.
 */
export function signaturePreimages(payload: unknown): Uint8Array[] {
  return signatureForms(payload).map((f) => f.bytes);
}

/** The preimage we sign `payload` with: canonical, or spaced for a peer that verifies only that (PROFILE §15). */
export function signingPreimage(payload: unknown, spaced = false): Uint8Array {
  return new TextEncoder().encode(canonicalJson(payload, { spaced }));
}
