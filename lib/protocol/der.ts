/**
 * A minimal DER reader and writer: just enough ASN.1 to take RSA public keys apart and to wrap a PKCS#1
 * RSAPublicKey into a SubjectPublicKeyInfo. Pure; never throws on bad input (returns `null`).
 *
 * @example
 * ```ts
 * const tlv = readTlv(new Uint8Array([0x02, 0x01, 0x05]), 0); // { tag: 2, start: 2, end: 3 }
 * ```
 * @module
 */

/** One DER element: its tag byte and where its content lies in the buffer. */
export interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** Read the element at `offset`; `null` when the bytes are not well-formed DER for that element. */
export function readTlv(buf: Uint8Array, offset: number): Tlv | null {
  if (offset + 2 > buf.length) return null;
  const tag = buf[offset];
  let len = buf[offset + 1];
  let pos = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || pos + n > buf.length) return null;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i];
    pos += n;
  }
  if (pos + len > buf.length) return null;
  return { tag, start: pos, end: pos + len };
}

/** The child elements of a constructed element's content; `null` if they do not tile it exactly. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] | null {
  const out: Tlv[] = [];
  let pos = parent.start;
  while (pos < parent.end) {
    const t = readTlv(buf, pos);
    if (!t || t.end > parent.end) return null;
    out.push(t);
    pos = t.end;
  }
  return out;
}

function lengthBytes(n: number): number[] {
  if (n < 0x80) return [n];
  const bytes: number[] = [];
  while (n > 0) {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  }
  return [0x80 | bytes.length, ...bytes];
}

/** Encode one element from its tag and content. */
export function encodeTlv(tag: number, content: Uint8Array): Uint8Array {
  const head = [tag, ...lengthBytes(content.length)];
  const out = new Uint8Array(head.length + content.length);
  out.set(head, 0);
  out.set(content, head.length);
  return out;
}

/** Concatenate byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
