/**
 * A user's identity file: user id (UUID), public key, and the private key sealed under a passphrase
 * (PBKDF2-SHA-256 + AES-256-GCM). Created on first use, reused afterwards.
 *
 * @example
 * ```ts
 * const me = await loadOrCreateUser("./alice.json", "passphrase", { displayName: "alice" });
 * me.userId; // a UUID, the same every run
 * ```
 * @module
 */
import { dirname } from "node:path";
import { openPrivateKey, type SealedKey, sealPrivateKey } from "../crypto/keyfile.ts";
import { generateKeyPair, PrivateKey } from "../crypto/rsa.ts";

/** A loaded user identity. */
export interface UserIdentity {
  userId: string;
  displayName?: string;
  key: PrivateKey;
  created: boolean;
}

interface UserFile {
  format: "socp-user-key/1";
  user_id: string;
  display_name?: string;
  pubkey: string;
  sealed: SealedKey;
}

/** Load the identity at `path`, or create it (with a new RSA-4096 key and user id) if the file is missing. */
export async function loadOrCreateUser(
  path: string,
  passphrase: string,
  opts: { displayName?: string; keyBits?: number } = {},
): Promise<UserIdentity> {
  let text: string | undefined;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (text !== undefined) {
    let file: UserFile;
    try {
      file = JSON.parse(text);
    } catch {
      throw new Error(`${path} is not a socp key file (not JSON)`);
    }
    if (file.format !== "socp-user-key/1" || typeof file.user_id !== "string") {
      throw new Error(`${path} is not a socp key file`);
    }
    const key = await PrivateKey.fromPkcs8(await openPrivateKey(file.sealed, passphrase));
    return { userId: file.user_id, displayName: opts.displayName ?? file.display_name, key, created: false };
  }
  if (passphrase.length === 0) throw new Error("a passphrase is required to protect a new key");
  const key = await generateKeyPair(opts.keyBits ?? 4096);
  const file: UserFile = {
    format: "socp-user-key/1",
    user_id: crypto.randomUUID(),
    display_name: opts.displayName,
    pubkey: key.publicKey,
    sealed: await sealPrivateKey(await key.exportPkcs8(), passphrase),
  };
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(path, JSON.stringify(file, null, 2) + "\n", { mode: 0o600, createNew: true });
  return { userId: file.user_id, displayName: opts.displayName, key, created: true };
}
