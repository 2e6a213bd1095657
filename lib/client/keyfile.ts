/**
 * A user's identity file on disk (Deno only): user id (UUID), public key, and the private key sealed under a
 * passphrase (PBKDF2-SHA-256 + AES-256-GCM, the metadata bound as additional data). The JSON format itself lives
 * in lib/crypto/keyfile.ts, which the browser shares. A new identity's user id is derived from its key (PROFILE
 * §16: self-certifying); an older file (format 1) is opened and rewritten in format 2.
 *
 * @example
 * ```ts
 * const me = await loadOrCreateUser("./alice.json", "passphrase", { displayName: "alice" });
 * me.userId; // a UUID, the same every run
 * ```
 * @module
 */
import { dirname } from "node:path";
import {
  MIN_PASSPHRASE_CHARS,
  openUserKeyFile,
  parseUserKeyFile,
  sealUserKeyFile,
  type UserKeyFile,
} from "../crypto/keyfile.ts";
import { generateKeyPair, type PrivateKey } from "../crypto/rsa.ts";
import { deriveUserId } from "../protocol/user_id.ts";

/** A loaded user identity. */
export interface UserIdentity {
  /** The user id (a UUID), the same every run. */
  userId: string;
  /** The display name given now, else the one in the file. */
  displayName?: string;
  /** The user's RSA private key. */
  key: PrivateKey;
  /** True when the file was created by this call. */
  created: boolean;
  /** True when an older file (metadata not authenticated) was rewritten in the current format. */
  upgraded?: boolean;
}

/** Write key-file JSON to `path` through a temporary file and a rename (a crash leaves the old file). */
async function writeKeyFile(path: string, file: UserKeyFile, createNew: boolean): Promise<void> {
  const text = JSON.stringify(file, null, 2) + "\n";
  if (createNew) return await Deno.writeTextFile(path, text, { mode: 0o600, createNew: true });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, text, { mode: 0o600, createNew: true });
  await Deno.rename(tmp, path);
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
  const id: UserIdentity = {
    userId: o.userId,
    displayName: opts.displayName ?? o.displayName,
    key: o.key,
    created: false,
  };
  if (o.upgraded) {
    await writeKeyFile(path, o.upgraded, false);
    id.upgraded = true;
  }
  return id;
}

/**
 * Create a new identity (RSA key, and the user id derived from it) and write it to `path` (which must not exist).
 * The passphrase must have at least 8 characters.
 */
export async function createUser(
  path: string,
  passphrase: string,
  opts: { displayName?: string; keyBits?: number } = {},
): Promise<UserIdentity> {
  if ([...passphrase].length < MIN_PASSPHRASE_CHARS) {
    throw new Error(`a new key needs a passphrase of at least ${MIN_PASSPHRASE_CHARS} characters`);
  }
  const key = await generateKeyPair(opts.keyBits ?? 4096);
  const userId = deriveUserId(key.publicKey)!; // self-certifying (PROFILE §16)
  const file = await sealUserKeyFile({ userId, displayName: opts.displayName, key }, passphrase);
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeKeyFile(path, file, true);
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
