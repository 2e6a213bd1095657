/**
 * A user's identity file on disk (Deno only): user id (UUID), public key, and the private key sealed under a
 * passphrase (PBKDF2-SHA-256 + AES-256-GCM). The JSON format itself lives in lib/crypto/keyfile.ts, which the
 * browser shares.
 *
 * @example
 * ```ts
 * const me = await loadOrCreateUser("./alice.json", "passphrase", { displayName: "alice" });
 * me.userId; // a UUID, the same every run
 * ```
 * @module
 */
import { dirname } from "node:path";
import { openUserKeyFile, parseUserKeyFile, sealUserKeyFile } from "../crypto/keyfile.ts";
import { generateKeyPair, type PrivateKey } from "../crypto/rsa.ts";

/** A loaded user identity. */
export interface UserIdentity {
  userId: string;
  displayName?: string;
  key: PrivateKey;
  created: boolean;
}

/** The key file's text, or undefined when there is none. */
export async function readKeyFile(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Open the identity stored in `text` (read from `path`); throws WrongPassphrase on a wrong passphrase. */
export async function openUser(
  path: string,
  text: string,
  passphrase: string,
  opts: { displayName?: string } = {},
): Promise<UserIdentity> {
  const parsed = parseUserKeyFile(text);
  if (!parsed.ok) throw new Error(`${path} is ${parsed.error}`);
  const o = await openUserKeyFile(parsed.file, passphrase);
  return { userId: o.userId, displayName: opts.displayName ?? o.displayName, key: o.key, created: false };
}

/** Create a new identity (RSA key + user id) and write it to `path` (which must not exist). */
export async function createUser(
  path: string,
  passphrase: string,
  opts: { displayName?: string; keyBits?: number } = {},
): Promise<UserIdentity> {
  if (passphrase.length === 0) throw new Error("a passphrase is required to protect a new key");
  const key = await generateKeyPair(opts.keyBits ?? 4096);
  const userId = crypto.randomUUID();
  const file = await sealUserKeyFile({ userId, displayName: opts.displayName, key }, passphrase);
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(path, JSON.stringify(file, null, 2) + "\n", { mode: 0o600, createNew: true });
  return { userId, displayName: opts.displayName, key, created: true };
}

/** Load the identity at `path`, or create it (with a new RSA-4096 key and user id) if the file is missing. */
export async function loadOrCreateUser(
  path: string,
  passphrase: string,
  opts: { displayName?: string; keyBits?: number } = {},
): Promise<UserIdentity> {
  const text = await readKeyFile(path);
  if (text !== undefined) return openUser(path, text, passphrase, opts);
  return createUser(path, passphrase, opts);
}
