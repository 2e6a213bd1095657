/**
 * Private keys at rest: PKCS#8 encrypted with AES-256-GCM under a key derived from a passphrase with
 * PBKDF2-SHA-256 (600,000 iterations, per-file random salt). Used for user key files and the node identity.
 * A node whose secret is a random key it generated (`node.secret`, 256 bits) seals with HKDF-SHA-256 instead
 * ({@linkcode RandomKey}): stretching protects guessable passphrases and adds nothing to a random key, while
 * costing 0.2–0.4 s of CPU per key at every start. A passphrase never opens an HKDF-sealed key.
 * A sealed key may bind additional data (AES-GCM AAD): a user key file binds its metadata (user id, public key,
 * display name), so none of them can be edited without the passphrase. Opening refuses iteration counts below
 * 600,000 (a weakened file) or above 10,000,000 (a file that would hang the program).
 *
 * @example
 * ```ts
 * import { generateKeyPair } from "./rsa.ts";
 *
 * const pkcs8 = await (await generateKeyPair()).exportPkcs8();
 * const blob = await sealPrivateKey(pkcs8, "correct horse");
 * const back = await openPrivateKey(blob, "correct horse"); // same bytes
 * ```
 * @module
 */
import { decodeBase64Url, encodeBase64Url } from "../protocol/base64url.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { PrivateKey } from "./rsa.ts";

/** The stored, encrypted form of a private key. */
export interface SealedKey {
  /** Key derivation: PBKDF2 with SHA-256 (a passphrase), or HKDF with SHA-256 (a {@linkcode RandomKey}). */
  kdf: "PBKDF2-SHA256" | "HKDF-SHA256";
  /** PBKDF2 iterations (0 for HKDF). */
  iterations: number;
  /** PBKDF2 or HKDF salt (base64url). */
  salt: string;
  /** Cipher: AES-256-GCM. */
  cipher: "AES-256-GCM";
  /** AES-GCM nonce (base64url). */
  iv: string;
  /** The sealed PKCS#8 private key with its tag (base64url). */
  data: string;
  /**
   * What the AES-GCM additional data binds, when something does: `"socp-user-key/2"` (the key file's metadata,
   * see {@linkcode keyFileAad}). Absent: no additional data (older files, the node's own keys).
   */
  aad?: string;
}

/** Thrown when a sealed key cannot be opened for a reason other than the passphrase (format, iterations). */
export class KeyFileError extends Error {
  /** `message` says what is wrong with the file. */
  constructor(message: string) {
    super(message);
    this.name = "KeyFileError";
  }
}

/** Thrown when the passphrase does not open the key. */
export class WrongPassphrase extends Error {
  constructor() {
    super("wrong passphrase (or the key file is damaged)");
    this.name = "WrongPassphrase";
  }
}

const ITERATIONS = 600_000;
/** Fewest PBKDF2 iterations a sealed key may have (what we seal with; OWASP's figure for PBKDF2-SHA-256). */
export const MIN_ITERATIONS = 600_000;
/** Most PBKDF2 iterations a sealed key may ask for (more would stall the program for minutes). */
export const MAX_ITERATIONS = 10_000_000;
/** Shortest passphrase for a new key (terminal and web alike). */
export const MIN_PASSPHRASE_CHARS = 8;

/**
 * A secret that is a random key the program generated (base64url of at least 32 random bytes), not a passphrase
 * a person chose: keys sealed under it use HKDF-SHA-256, and only a `RandomKey` opens them.
 */
export interface RandomKey {
  /** base64url of ≥ 32 random bytes. */
  randomKey: string;
}

/** What seals a key: a passphrase (PBKDF2) or a {@linkcode RandomKey} (HKDF). */
export type SealSecret = string | RandomKey;

/** Shortest random key accepted for HKDF sealing, in bytes. */
export const MIN_RANDOM_KEY_BYTES = 32;

/** The bytes of a random key, or null when it is not base64url of ≥ 32 bytes (then it is treated as a passphrase). */
export function randomKeyBytes(text: string): Uint8Array<ArrayBuffer> | null {
  const b = decodeBase64Url(text);
  return b && b.length >= MIN_RANDOM_KEY_BYTES ? new Uint8Array(b) : null;
}

const HKDF_INFO = new TextEncoder().encode("socp sealed private key v1");

async function hkdfKey(secret: Uint8Array<ArrayBuffer>, salt: Uint8Array<ArrayBuffer>) {
  const base = await crypto.subtle.importKey("raw", secret, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: HKDF_INFO },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

async function deriveKey(passphrase: string, salt: Uint8Array<ArrayBuffer>, iterations: number) {
  const base = await crypto.subtle.importKey("raw", new TextEncoder().encode(passphrase), "PBKDF2", false, [
    "deriveKey",
  ]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/**
 * Encrypt PKCS#8 bytes under a passphrase (PBKDF2) or a {@linkcode RandomKey} (HKDF; throws
 * {@linkcode KeyFileError} when it is not base64url of ≥ 32 bytes); with `aad`, AES-GCM also authenticates those
 * bytes (named by `aadLabel` in the result, so the opener knows to supply them).
 */
export async function sealPrivateKey(
  pkcs8: Uint8Array,
  secret: SealSecret,
  aad?: { label: string; bytes: Uint8Array },
): Promise<SealedKey> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  let key: CryptoKey;
  if (typeof secret === "string") key = await deriveKey(secret, salt, ITERATIONS);
  else {
    const bytes = randomKeyBytes(secret.randomKey);
    if (!bytes) {
      throw new KeyFileError(`a random key must be base64url of at least ${MIN_RANDOM_KEY_BYTES} bytes`);
    }
    key = await hkdfKey(bytes, salt);
  }
  const params: AesGcmParams = { name: "AES-GCM", iv };
  if (aad) params.additionalData = new Uint8Array(aad.bytes);
  const data = new Uint8Array(await crypto.subtle.encrypt(params, key, new Uint8Array(pkcs8)));
  const out: SealedKey = {
    kdf: typeof secret === "string" ? "PBKDF2-SHA256" : "HKDF-SHA256",
    iterations: typeof secret === "string" ? ITERATIONS : 0,
    salt: encodeBase64Url(salt),
    cipher: "AES-256-GCM",
    iv: encodeBase64Url(iv),
    data: encodeBase64Url(data),
  };
  if (aad) out.aad = aad.label;
  return out;
}

/**
 * Decrypt a sealed key; throws {@linkcode WrongPassphrase} when the passphrase is wrong (or the sealed bytes or
 * the additional data were changed), {@linkcode KeyFileError} when the format or the iteration count is not
 * acceptable. `aad`: the additional data a sealed key that names one (`sealed.aad`) was sealed with. An
 * HKDF-sealed key opens only with a {@linkcode RandomKey}; a PBKDF2-sealed key opens with a passphrase or with a
 * random key's text (keys sealed by older versions under `node.secret`).
 */
export async function openPrivateKey(
  sealed: SealedKey,
  secret: SealSecret,
  aad?: Uint8Array,
): Promise<Uint8Array> {
  const salt = decodeBase64Url(sealed.salt);
  const iv = decodeBase64Url(sealed.iv);
  const data = decodeBase64Url(sealed.data);
  const kdfs = ["PBKDF2-SHA256", "HKDF-SHA256"];
  if (!salt || !iv || !data || !kdfs.includes(sealed.kdf) || sealed.cipher !== "AES-256-GCM") {
    throw new KeyFileError("the key file is not in a format this version understands");
  }
  if (sealed.aad !== undefined && !aad) {
    throw new KeyFileError(`the key file binds "${sealed.aad}" data that was not supplied`);
  }
  let key: CryptoKey;
  if (sealed.kdf === "HKDF-SHA256") {
    const bytes = typeof secret === "string" ? null : randomKeyBytes(secret.randomKey);
    if (!bytes) {
      throw new KeyFileError(
        "the key was sealed under a random key (a node's node.secret), not a passphrase; a passphrase cannot open it",
      );
    }
    key = await hkdfKey(bytes, new Uint8Array(salt));
  } else key = await pbkdf2Key(sealed, typeof secret === "string" ? secret : secret.randomKey, salt);
  return await decryptSealed(sealed, key, iv, data, aad);
}

async function decryptSealed(
  sealed: SealedKey,
  key: CryptoKey,
  iv: Uint8Array,
  data: Uint8Array,
  aad?: Uint8Array,
): Promise<Uint8Array> {
  const params: AesGcmParams = { name: "AES-GCM", iv: new Uint8Array(iv) };
  if (sealed.aad !== undefined && aad) params.additionalData = new Uint8Array(aad);
  try {
    return new Uint8Array(await crypto.subtle.decrypt(params, key, new Uint8Array(data)));
  } catch {
    throw new WrongPassphrase();
  }
}

/** The PBKDF2 key of a sealed key, after its iteration count is checked. */
function pbkdf2Key(sealed: SealedKey, passphrase: string, salt: Uint8Array): Promise<CryptoKey> {
  const n = sealed.iterations;
  if (!Number.isSafeInteger(n) || n < MIN_ITERATIONS) {
    throw new KeyFileError(
      `the key file asks for ${n} PBKDF2 iterations; at least ${MIN_ITERATIONS.toLocaleString("en")} are ` +
        "required (a file with fewer was weakened or made by other software)",
    );
  }
  if (n > MAX_ITERATIONS) {
    throw new KeyFileError(
      `the key file asks for ${n} PBKDF2 iterations; more than ${
        MAX_ITERATIONS.toLocaleString("en")
      } is refused (it would stall the program)`,
    );
  }
  return deriveKey(passphrase, new Uint8Array(salt), n);
}

/**
 * The JSON of a user's key file (`~/.socp/keys/<name>.json`), shared by the terminal and the web app. Version 2
 * binds `format`, `user_id`, `pubkey` and `display_name` as AES-GCM additional data; version 1 (older files) bound
 * nothing and is still opened, then upgraded ({@linkcode OpenedUserKey.upgraded}).
 */
export interface UserKeyFile {
  /** Format marker and version. */
  format: "socp-user-key/1" | "socp-user-key/2";
  /** The user id (a UUID). */
  user_id: string;
  /** Display name, when one was given. */
  display_name?: string;
  /** The public key (base64url SPKI). */
  pubkey: string;
  /** The private key, sealed under the passphrase. */
  sealed: SealedKey;
}

/** A user identity opened from a key file. */
export interface OpenedUserKey {
  /** The user id (a UUID). */
  userId: string;
  /** Display name, when the file has one. */
  displayName?: string;
  /** The user's RSA private key. */
  key: PrivateKey;
  /**
   * Set when the file was a version 1 file (its metadata not authenticated): the same identity sealed again as
   * version 2 under the same passphrase. The caller should store it in place of the old file.
   */
  upgraded?: UserKeyFile;
}

/** The current key-file format. */
export const KEY_FILE_FORMAT = "socp-user-key/2";

/** The additional data a version 2 key file binds: canonical JSON of its format, ids, key and name. */
export function keyFileAad(
  f: { format: string; user_id: string; pubkey: string; display_name?: string },
): Uint8Array {
  const meta: Record<string, string> = { format: f.format, user_id: f.user_id, pubkey: f.pubkey };
  if (f.display_name !== undefined) meta.display_name = f.display_name;
  return new TextEncoder().encode(canonicalJson(meta));
}

/** Seal PKCS#8 bytes and metadata into a version 2 key file. */
async function sealFile(
  meta: { userId: string; displayName?: string; publicKey: string },
  pkcs8: Uint8Array,
  passphrase: string,
): Promise<UserKeyFile> {
  const head: Omit<UserKeyFile, "sealed"> = {
    format: KEY_FILE_FORMAT,
    user_id: meta.userId,
    pubkey: meta.publicKey,
  };
  if (meta.displayName !== undefined) head.display_name = meta.displayName;
  const sealed = await sealPrivateKey(pkcs8, passphrase, { label: KEY_FILE_FORMAT, bytes: keyFileAad(head) });
  return { ...head, sealed };
}

/** Seal an identity into key-file JSON (the object; `JSON.stringify` it to store it). */
export async function sealUserKeyFile(
  id: { userId: string; displayName?: string; key: PrivateKey },
  passphrase: string,
): Promise<UserKeyFile> {
  if (passphrase.length === 0) throw new Error("a passphrase is required to protect a key");
  return await sealFile(
    { userId: id.userId, displayName: id.displayName, publicKey: id.key.publicKey },
    await id.key.exportPkcs8(),
    passphrase,
  );
}

/** Parse key-file text; an error value (never a throw) when it is not one. */
export function parseUserKeyFile(
  text: string,
): { ok: true; file: UserKeyFile } | { ok: false; error: string } {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, error: "not a socp key file (not JSON)" };
  }
  const f = v as Partial<UserKeyFile> | null;
  const sealed = f?.sealed as Partial<SealedKey> | undefined;
  if (
    !f || typeof f !== "object" || (f.format !== "socp-user-key/1" && f.format !== KEY_FILE_FORMAT) ||
    typeof f.user_id !== "string" ||
    typeof f.pubkey !== "string" || !sealed || typeof sealed !== "object" ||
    typeof sealed.salt !== "string" ||
    typeof sealed.iv !== "string" || typeof sealed.data !== "string" ||
    typeof sealed.iterations !== "number" ||
    (f.display_name !== undefined && typeof f.display_name !== "string") ||
    (sealed.aad !== undefined && typeof sealed.aad !== "string") ||
    (f.format === KEY_FILE_FORMAT && sealed.aad !== KEY_FILE_FORMAT)
  ) {
    return { ok: false, error: "not a socp key file" };
  }
  return { ok: true, file: f as UserKeyFile };
}

/**
 * Open a key file with its passphrase; throws {@linkcode WrongPassphrase} when the passphrase is wrong or the
 * metadata was edited (version 2), {@linkcode KeyFileError} when the file is unacceptable (iterations, a public key
 * that is not the private key's). With `{ extractable: false }` the private key cannot be exported again (what a
 * browser keeps). A version 1 file comes back with `upgraded`: the same identity as a version 2 file.
 */
export async function openUserKeyFile(
  file: UserKeyFile,
  passphrase: string,
  opts: { extractable?: boolean } = {},
): Promise<OpenedUserKey> {
  const v2 = file.format === KEY_FILE_FORMAT;
  const pkcs8 = await openPrivateKey(file.sealed, passphrase, v2 ? keyFileAad(file) : undefined);
  const key = await PrivateKey.fromPkcs8(pkcs8, opts);
  if (!sameKeyMaterial(key.publicKey, file.pubkey)) {
    throw new KeyFileError("the key file's public key is not the public half of its private key");
  }
  const out: OpenedUserKey = { userId: file.user_id, key };
  if (file.display_name !== undefined) out.displayName = file.display_name;
  if (!v2) {
    out.upgraded = await sealFile(
      { userId: file.user_id, displayName: file.display_name, publicKey: file.pubkey },
      pkcs8,
      passphrase,
    );
  }
  pkcs8.fill(0);
  return out;
}
