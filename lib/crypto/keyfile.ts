/**
 * Private keys at rest: PKCS#8 encrypted with AES-256-GCM under a key derived from a passphrase with
 * PBKDF2-SHA-256 (600,000 iterations, per-file random salt). Used for user key files and the node identity.
 *
 * @example
 * ```ts
 * const blob = await sealPrivateKey(pkcs8, "correct horse");
 * const back = await openPrivateKey(blob, "correct horse"); // same bytes
 * ```
 * @module
 */
import { decodeBase64Url, encodeBase64Url } from "../protocol/base64url.ts";
import { PrivateKey } from "./rsa.ts";

/** The stored, encrypted form of a private key. */
export interface SealedKey {
  kdf: "PBKDF2-SHA256";
  iterations: number;
  salt: string;
  cipher: "AES-256-GCM";
  iv: string;
  data: string;
}

/** Thrown when the passphrase does not open the key. */
export class WrongPassphrase extends Error {
  constructor() {
    super("wrong passphrase (or the key file is damaged)");
    this.name = "WrongPassphrase";
  }
}

const ITERATIONS = 600_000;

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

/** Encrypt PKCS#8 bytes under a passphrase. */
export async function sealPrivateKey(pkcs8: Uint8Array, passphrase: string): Promise<SealedKey> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await deriveKey(passphrase, salt, ITERATIONS);
  const data = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new Uint8Array(pkcs8)),
  );
  return {
    kdf: "PBKDF2-SHA256",
    iterations: ITERATIONS,
    salt: encodeBase64Url(salt),
    cipher: "AES-256-GCM",
    iv: encodeBase64Url(iv),
    data: encodeBase64Url(data),
  };
}

/** Decrypt a sealed key; throws {@linkcode WrongPassphrase} when the passphrase is wrong. */
export async function openPrivateKey(sealed: SealedKey, passphrase: string): Promise<Uint8Array> {
  const salt = decodeBase64Url(sealed.salt);
  const iv = decodeBase64Url(sealed.iv);
  const data = decodeBase64Url(sealed.data);
  if (!salt || !iv || !data || sealed.kdf !== "PBKDF2-SHA256" || sealed.cipher !== "AES-256-GCM") {
    throw new Error("the key file is not in a format this version understands");
  }
  const key = await deriveKey(passphrase, new Uint8Array(salt), sealed.iterations);
  try {
    return new Uint8Array(
      await crypto.subtle.decrypt({ name: "AES-GCM", iv: new Uint8Array(iv) }, key, new Uint8Array(data)),
    );
  } catch {
    throw new WrongPassphrase();
  }
}

/** The JSON of a user's key file (`~/.socp/keys/<name>.json`), shared by the terminal and the web app. */
export interface UserKeyFile {
  format: "socp-user-key/1";
  user_id: string;
  display_name?: string;
  pubkey: string;
  sealed: SealedKey;
}

/** A user identity opened from a key file. */
export interface OpenedUserKey {
  userId: string;
  displayName?: string;
  key: PrivateKey;
}

/** Seal an identity into key-file JSON (the object; `JSON.stringify` it to store it). */
export async function sealUserKeyFile(
  id: { userId: string; displayName?: string; key: PrivateKey },
  passphrase: string,
): Promise<UserKeyFile> {
  if (passphrase.length === 0) throw new Error("a passphrase is required to protect a key");
  const file: UserKeyFile = {
    format: "socp-user-key/1",
    user_id: id.userId,
    pubkey: id.key.publicKey,
    sealed: await sealPrivateKey(await id.key.exportPkcs8(), passphrase),
  };
  if (id.displayName !== undefined) file.display_name = id.displayName;
  return file;
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
    !f || typeof f !== "object" || f.format !== "socp-user-key/1" || typeof f.user_id !== "string" ||
    typeof f.pubkey !== "string" || !sealed || typeof sealed !== "object" ||
    typeof sealed.salt !== "string" ||
    typeof sealed.iv !== "string" || typeof sealed.data !== "string" ||
    typeof sealed.iterations !== "number" ||
    (f.display_name !== undefined && typeof f.display_name !== "string")
  ) {
    return { ok: false, error: "not a socp key file" };
  }
  return { ok: true, file: f as UserKeyFile };
}

/**
 * Open a key file with its passphrase; throws {@linkcode WrongPassphrase} when the passphrase is wrong. With
 * `{ extractable: false }` the private key cannot be exported again (what a browser keeps).
 */
export async function openUserKeyFile(
  file: UserKeyFile,
  passphrase: string,
  opts: { extractable?: boolean } = {},
): Promise<OpenedUserKey> {
  const key = await PrivateKey.fromPkcs8(await openPrivateKey(file.sealed, passphrase), opts);
  const out: OpenedUserKey = { userId: file.user_id, key };
  if (file.display_name !== undefined) out.displayName = file.display_name;
  return out;
}
