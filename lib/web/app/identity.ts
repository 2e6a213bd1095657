/**
 * The browser identity: an RSA-4096 key made here, kept in IndexedDB as NON-extractable CryptoKeys (script can
 * sign and decrypt with it, nobody can read it out), and the same passphrase-sealed key file the terminal client
 * keeps in `~/.socp/keys/<name>.json`, for export and import.
 *
 * At creation the key exists in extractable form only long enough to seal it under the passphrase; the
 * CryptoKeys stored are imported again as non-extractable.
 *
 * @module
 */
import {
  openUserKeyFile,
  parseUserKeyFile,
  sealUserKeyFile,
  type UserKeyFile,
  WrongPassphrase,
} from "../../crypto/keyfile.ts";
import { generateKeyPair, PrivateKey } from "../../crypto/rsa.ts";
import { deriveUserId } from "../../protocol/user_id.ts";
import type { Db, StoredIdentity } from "./db.ts";

/** An identity ready to use. */
export interface Identity {
  userId: string;
  displayName: string;
  key: PrivateKey;
  keyFile: UserKeyFile;
}

/** The rules for a display name (shown to others; 1-32 characters, no control characters). */
export function checkDisplayName(name: string): string | null {
  const n = name.trim();
  if (!n) return "Choose a display name.";
  if ([...n].length > 32) return "A display name has at most 32 characters.";
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(n)) return "A display name cannot contain control characters.";
  return null;
}

/** The rules for a new passphrase. */
export function checkNewPassphrase(pass: string, again: string): string | null {
  if (pass.length < 8) return "The passphrase needs at least 8 characters.";
  if (pass !== again) return "The two passphrases differ.";
  return null;
}

async function store(db: Db, userId: string, displayName: string, locked: PrivateKey, keyFile: UserKeyFile) {
  const { signKey, decryptKey } = locked.cryptoKeys();
  const rec: StoredIdentity = {
    id: "me",
    userId,
    displayName,
    pubkey: locked.publicKey,
    spki: locked.spki,
    signKey,
    decryptKey,
    keyFile,
  };
  await db.saveIdentity(rec);
  return { userId, displayName, key: locked, keyFile };
}

/** Make a new identity: RSA-4096 key, user id, sealed key file; stored in IndexedDB. */
export async function createIdentity(db: Db, displayName: string, passphrase: string): Promise<Identity> {
  const name = displayName.trim();
  const key = await generateKeyPair(4096);
  // PROFILE §16: the id is derived from the key (self-certifying), so nobody can hold it with another key.
  const userId = deriveUserId(key.publicKey)!;
  const keyFile = await sealUserKeyFile({ userId, displayName: name, key }, passphrase);
  const pkcs8 = await key.exportPkcs8();
  const locked = await PrivateKey.fromPkcs8(pkcs8, { extractable: false });
  pkcs8.fill(0);
  return store(db, userId, name, locked, keyFile);
}

/** Import a key file (the terminal client's `~/.socp/keys/<name>.json`) with its passphrase. */
export async function importIdentity(
  db: Db,
  text: string,
  passphrase: string,
  displayName?: string,
): Promise<Identity> {
  const parsed = parseUserKeyFile(text);
  if (!parsed.ok) throw new Error(`That file is ${parsed.error}. Choose the .json key file of a socp user.`);
  let opened;
  try {
    opened = await openUserKeyFile(parsed.file, passphrase, { extractable: false });
  } catch (e) {
    if (e instanceof WrongPassphrase) throw new Error("Wrong passphrase for this key file. Try again.");
    throw new Error("This key file could not be opened: it may be damaged.");
  }
  const name = displayName?.trim() || opened.displayName || "me";
  return store(db, opened.userId, name, opened.key, parsed.file);
}

/** The identity kept in IndexedDB, if any. */
export async function loadIdentity(db: Db): Promise<Identity | undefined> {
  const rec = await db.identity();
  if (!rec) return undefined;
  return {
    userId: rec.userId,
    displayName: rec.displayName,
    key: PrivateKey.fromCryptoKeys(rec.signKey, rec.decryptKey, rec.spki),
    keyFile: rec.keyFile,
  };
}

/** The key file's text, as the terminal client writes it. */
export function keyFileText(id: Identity): string {
  return JSON.stringify(id.keyFile, null, 2) + "\n";
}
