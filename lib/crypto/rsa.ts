/**
 * RSA through WebCrypto only (PROFILE §2): RSA-4096 generation, PSS sign (maximum salt, 478 bytes for
 * RSA-4096) and verify (maximum salt, then 32), multi-block OAEP (SHA-256, MGF1-SHA-256, empty label), and an
 * import cache keyed by the key string so each peer key is parsed once.
 *
 * @example
 * ```ts
 * const pair = await generateKeyPair();
 * const sig = await pair.sign(new TextEncoder().encode("hi"));
 * await verifySignature(pair.publicKey, new TextEncoder().encode("hi"), sig); // true
 * ```
 * @module
 */
import { decodeBase64Url, encodeBase64Url } from "../protocol/base64url.ts";
import { concatBytes } from "../protocol/der.ts";
import { decodePublicKey, encodeSpki } from "../protocol/keys.ts";

const HASH_LEN = 32;
type Bytes = Uint8Array<ArrayBuffer>;

function ab(b: Uint8Array): Bytes {
  return (b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength)
    ? b as Bytes
    : new Uint8Array(b) as Bytes;
}

/** Maximum PSS salt for a modulus of `bytes` bytes with SHA-256 (478 for RSA-4096). */
export function maxSaltLength(modulusBytes: number): number {
  return modulusBytes - HASH_LEN - 2;
}

/** Maximum OAEP plaintext per block (446 for RSA-4096). */
export function oaepBlockSize(modulusBytes: number): number {
  return modulusBytes - 2 * HASH_LEN - 2;
}

/** SHA-256 of bytes (a string is hashed as UTF-8), through WebCrypto. */
export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : ab(data);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += HEX[b];
  return s;
}

/** Lowercase hex of SHA-256. */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  return toHex(await sha256(data));
}

/** A private key able to sign (PSS) and decrypt (OAEP); the same RSA key material serves both. */
export class PrivateKey {
  private constructor(
    private readonly signKey: CryptoKey,
    private readonly decryptKey: CryptoKey,
    /** base64url(DER SPKI) of the public half. */
    readonly publicKey: string,
    /** DER SPKI of the public half. */
    readonly spki: Uint8Array,
    /** Modulus size in bytes. */
    readonly modulusBytes: number,
  ) {}

  /**
   * Import a PKCS#8 DER private key. Throws when the bytes are not an RSA private key. With
   * `{ extractable: false }` the resulting CryptoKeys cannot be exported again (a browser keeps them so in
   * IndexedDB); {@linkcode exportPkcs8} then throws.
   */
  static async fromPkcs8(pkcs8: Uint8Array, opts: { extractable?: boolean } = {}): Promise<PrivateKey> {
    const extractable = opts.extractable ?? true;
    // Imported extractable once to read the public half (n, e); kept only when the caller allows it.
    const probe = await crypto.subtle.importKey(
      "pkcs8",
      ab(pkcs8),
      { name: "RSA-PSS", hash: "SHA-256" },
      true,
      [
        "sign",
      ],
    );
    const signKey = extractable
      ? probe
      : await crypto.subtle.importKey("pkcs8", ab(pkcs8), { name: "RSA-PSS", hash: "SHA-256" }, false, [
        "sign",
      ]);
    const decryptKey = await crypto.subtle.importKey(
      "pkcs8",
      ab(pkcs8),
      { name: "RSA-OAEP", hash: "SHA-256" },
      false,
      ["decrypt"],
    );
    const jwk = await crypto.subtle.exportKey("jwk", probe);
    const pub = await crypto.subtle.importKey(
      "jwk",
      { kty: "RSA", n: jwk.n, e: jwk.e, alg: "PS256", ext: true },
      { name: "RSA-PSS", hash: "SHA-256" },
      true,
      ["verify"],
    );
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pub));
    return PrivateKey.fromCryptoKeys(signKey, decryptKey, spki);
  }

  /**
   * Wrap CryptoKeys kept elsewhere (a browser's IndexedDB): an RSA-PSS/SHA-256 signing key, an RSA-OAEP/SHA-256
   * decryption key of the same key material, and the DER SPKI of its public half.
   */
  static fromCryptoKeys(signKey: CryptoKey, decryptKey: CryptoKey, spki: Uint8Array): PrivateKey {
    const bits = (signKey.algorithm as RsaHashedKeyAlgorithm).modulusLength;
    return new PrivateKey(signKey, decryptKey, encodeSpki(spki), spki, bits / 8);
  }

  /** The underlying CryptoKeys (to store them, e.g. in IndexedDB; non-extractable keys stay so). */
  cryptoKeys(): { signKey: CryptoKey; decryptKey: CryptoKey } {
    return { signKey: this.signKey, decryptKey: this.decryptKey };
  }

  /** Import a PEM "PRIVATE KEY" (PKCS#8) text. */
  static fromPem(pem: string): Promise<PrivateKey> {
    const m = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem);
    const der = m ? decodeBase64Url(m[1].replace(/\s+/g, "")) : null;
    if (!der) throw new Error("not a PEM PKCS#8 private key");
    return PrivateKey.fromPkcs8(der);
  }

  /** PSS-sign `data` with the maximum salt length (PROFILE §2). */
  async sign(data: Uint8Array): Promise<string> {
    const sig = await crypto.subtle.sign(
      { name: "RSA-PSS", saltLength: maxSaltLength(this.modulusBytes) },
      this.signKey,
      ab(data),
    );
    return encodeBase64Url(new Uint8Array(sig));
  }

  /** Multi-block OAEP decrypt of base64url ciphertext; throws when it is not ours or is corrupt. */
  async decrypt(ciphertext: string): Promise<Uint8Array> {
    const bytes = decodeBase64Url(ciphertext);
    const k = this.modulusBytes;
    if (!bytes || bytes.length === 0 || bytes.length % k !== 0) {
      throw new Error(`ciphertext must be a multiple of ${k} bytes`);
    }
    // Blocks are independent: decrypt them concurrently (WebCrypto runs them on its worker threads).
    const parts: Promise<ArrayBuffer>[] = [];
    for (let o = 0; o < bytes.length; o += k) {
      parts.push(crypto.subtle.decrypt({ name: "RSA-OAEP" }, this.decryptKey, ab(bytes.subarray(o, o + k))));
    }
    return concatBytes(...(await Promise.all(parts)).map((b) => new Uint8Array(b)));
  }

  /** Export as PKCS#8 DER (for encrypted storage only). */
  async exportPkcs8(): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.exportKey("pkcs8", this.signKey));
  }
}

/** Generate a new RSA key pair (4096 bits unless the weak-keys lab mode asks for less). */
export async function generateKeyPair(bits = 4096): Promise<PrivateKey> {
  const pair = await crypto.subtle.generateKey(
    { name: "RSA-PSS", modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["sign", "verify"],
  );
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  return PrivateKey.fromPkcs8(pkcs8);
}

interface Imported {
  key: CryptoKey;
  modulusBytes: number;
}

/**
 * Imported public keys, one cache per use, each an LRU. An imported CryptoKey costs about 6 KiB (heap and native)
 * and keys come from anyone who sends a frame, so the caches are small: re-importing a key costs far less than
 * the RSA operation it serves. Verify keys serve every signed frame of the users and servers that are active;
 * encrypt keys serve the channel key wrapped for each member when they join, once per user, so a user online but
 * idle holds no imported key.
 */
const caches = {
  verify: { max: 1024, keys: new Map<string, Promise<Imported | null>>() },
  encrypt: { max: 64, keys: new Map<string, Promise<Imported | null>>() },
};

/** Import a public key string (any accepted form) for one use; `null` if it is not a key. */
function importPublicKey(keyText: string, use: "verify" | "encrypt"): Promise<Imported | null> {
  const cache = caches[use];
  const hit = cache.keys.get(keyText);
  if (hit) {
    cache.keys.delete(keyText); // refresh LRU position
    cache.keys.set(keyText, hit);
    return hit;
  }
  const p = (async () => {
    const d = decodePublicKey(keyText);
    if (!d.ok) return null;
    try {
      const key = await crypto.subtle.importKey(
        "spki",
        ab(d.key.spki),
        use === "verify" ? { name: "RSA-PSS", hash: "SHA-256" } : { name: "RSA-OAEP", hash: "SHA-256" },
        false,
        [use],
      );
      return { key, modulusBytes: Math.ceil(d.key.bits / 8) };
    } catch {
      return null;
    }
  })();
  cache.keys.set(keyText, p);
  if (cache.keys.size > cache.max) cache.keys.delete(cache.keys.keys().next().value!);
  return p;
}

/**
 * Verify a base64url PSS signature over any of `preimages` (tried in order), each with the maximum salt then
 * salt 32. Returns the index of the preimage that verified, or -1.
 */
export async function verifyAny(keyText: string, preimages: Uint8Array[], sig: string): Promise<number> {
  const key = await importPublicKey(keyText, "verify");
  const sigBytes = decodeBase64Url(sig);
  if (!key || !sigBytes || sigBytes.length !== key.modulusBytes) return -1;
  const salts = [maxSaltLength(key.modulusBytes), HASH_LEN];
  for (let i = 0; i < preimages.length; i++) {
    for (const saltLength of salts) {
      if (
        await crypto.subtle.verify(
          { name: "RSA-PSS", saltLength },
          key.key,
          ab(sigBytes),
          ab(preimages[i]),
        )
      ) return i;
    }
  }
  return -1;
}

/** Verify one preimage (see {@linkcode verifyAny}). */
export async function verifySignature(keyText: string, data: Uint8Array, sig: string): Promise<boolean> {
  return (await verifyAny(keyText, [data], sig)) === 0;
}

/** Multi-block OAEP encrypt to a public key string (PROFILE §2); base64url of the concatenated blocks. */
export async function encryptTo(keyText: string, plaintext: Uint8Array): Promise<string> {
  const key = await importPublicKey(keyText, "encrypt");
  if (!key) throw new Error("recipient key is not a usable RSA public key");
  const block = oaepBlockSize(key.modulusBytes);
  const parts: Promise<ArrayBuffer>[] = [];
  for (let o = 0; o === 0 || o < plaintext.length; o += block) {
    parts.push(
      crypto.subtle.encrypt({ name: "RSA-OAEP" }, key.key, ab(plaintext.subarray(o, o + block))),
    );
  }
  return encodeBase64Url(concatBytes(...(await Promise.all(parts)).map((b) => new Uint8Array(b))));
}
