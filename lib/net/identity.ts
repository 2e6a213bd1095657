/**
 * The node's identity: a UUID v4 server id and an RSA-4096 key, created on the first run and reused. The
 * private key is stored in SQLite sealed under a passphrase: `SOCP_NODE_PASSPHRASE` when set (PBKDF2), otherwise
 * a random 256-bit key the node writes to `<data>/node.secret` (mode 0600; HKDF, as a random key needs no
 * stretching), so a copy of the database alone does not reveal it.
 *
 * @module
 */
import { join } from "node:path";
import { openPrivateKey, randomKeyBytes, sealPrivateKey, type SealSecret } from "../crypto/keyfile.ts";
import { generateKeyPair, PrivateKey } from "../crypto/rsa.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import type { Store } from "../store/sqlite.ts";

/** A loaded identity. */
export interface Identity {
  serverId: string;
  key: PrivateKey;
  created: boolean;
}

/**
 * How a `node.secret` written by this version begins. Only such a file counts as a random key (HKDF, no
 * stretching): one an older version wrote, or one edited by hand, cannot be told apart from a typed passphrase,
 * so it is stretched (PBKDF2) like one.
 */
export const RANDOM_SECRET_PREFIX = "socp-random-key-v1:";

/**
 * What seals the node's own keys: the passphrase when one is set, else what `<data>/node.secret` holds
 * (created on first use with a random 256-bit key under {@linkcode RANDOM_SECRET_PREFIX}).
 */
export async function nodeSecret(dataDir: string, passphrase?: string): Promise<SealSecret> {
  if (passphrase) return passphrase;
  const path = join(dataDir, "node.secret");
  try {
    const text = (await Deno.readTextFile(path)).trim();
    const key = text.startsWith(RANDOM_SECRET_PREFIX) ? text.slice(RANDOM_SECRET_PREFIX.length) : "";
    return randomKeyBytes(key) ? { randomKey: key } : text;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const secret = encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  await Deno.writeTextFile(path, RANDOM_SECRET_PREFIX + secret + "\n", { mode: 0o600, createNew: true });
  return { randomKey: secret };
}

/** Load the identity from the store, or create and store a new one. */
export async function loadOrCreateIdentity(
  store: Store,
  dataDir: string,
  opts: { passphrase?: string; keyBits?: number; now: number },
): Promise<Identity> {
  const existing = store.getIdentity();
  if (existing) {
    const secret = await nodeSecret(dataDir, opts.passphrase);
    const pkcs8 = await openPrivateKey(existing.sealed, secret).catch((e) => {
      const file = join(dataDir, "node.secret");
      throw new Error(
        existing.sealed.kdf === "HKDF-SHA256"
          ? `cannot open the node identity key: it is sealed under ${file} (${e.message}); ` +
            (opts.passphrase ? "unset SOCP_NODE_PASSPHRASE, and " : "") + `restore ${file} if it changed`
          : "cannot open the node identity key (" + e.message +
            "): set SOCP_NODE_PASSPHRASE to the passphrase " +
            `it was created with, or restore ${file}`,
      );
    });
    return { serverId: existing.serverId, key: await PrivateKey.fromPkcs8(pkcs8), created: false };
  }
  const key = await generateKeyPair(opts.keyBits ?? 4096);
  const secret = await nodeSecret(dataDir, opts.passphrase);
  const sealed = await sealPrivateKey(await key.exportPkcs8(), secret);
  const serverId = crypto.randomUUID();
  store.setIdentity({ serverId, pubkey: key.publicKey, sealed }, opts.now);
  return { serverId, key, created: true };
}

/** A short, human-comparable fingerprint of a key string: hex SHA-256 of its SPKI, first 16 bytes grouped. */
export async function fingerprint(spki: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(spki)));
  return [...d.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("").match(/.{4}/g)!.join(
    ":",
  );
}

/** A file or directory whose mode was narrowed by {@linkcode secureDataDir}. */
export interface ModeFix {
  path: string;
  /** The old mode (octal text). */
  from: string;
  /** The new mode, or why it could not be changed. */
  to: string;
  ok: boolean;
}

/** Files in the data directory that only the node's user may read: the database, its journal, the secret. */
const PRIVATE_FILES = ["socp.db", "socp.db-wal", "socp.db-shm", "socp.db-journal", "node.secret"];

/**
 * Create the data directory (mode 0700) and narrow what is already there: the directory to 0700, the database
 * files and `node.secret` to 0600, when group or others had any access. Returns what it changed, for the log.
 * Nothing to do on Windows (no POSIX modes).
 */
export function secureDataDir(dir: string): ModeFix[] {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (Deno.build.os === "windows") return [];
  const fixes: ModeFix[] = [];
  const narrow = (path: string, mode: number) => {
    let st: Deno.FileInfo;
    try {
      st = Deno.statSync(path);
    } catch {
      return; // not there (yet): created with the right mode
    }
    const old = (st.mode ?? 0) & 0o777;
    if ((old & 0o077) === 0) return;
    const from = old.toString(8).padStart(4, "0");
    try {
      Deno.chmodSync(path, mode);
      fixes.push({ path, from, to: mode.toString(8).padStart(4, "0"), ok: true });
    } catch (e) {
      fixes.push({ path, from, to: `unchanged (${(e as Error).message.split("\n")[0]})`, ok: false });
    }
  };
  narrow(dir, 0o700);
  for (const f of PRIVATE_FILES) narrow(join(dir, f), 0o600);
  return fixes;
}

/** Thrown when another running node holds the data directory. */
export class DataDirInUse extends Error {}

/**
 * Take the data directory for this process: an exclusive lock on `<dir>/socp.lock`, held until the returned file
 * is closed (or the process ends). Two nodes on one data directory would share one server id and key and one
 * database; the second is refused with {@linkcode DataDirInUse} instead.
 */
export function lockDataDir(dir: string): Deno.FsFile {
  const file = Deno.openSync(join(dir, "socp.lock"), { read: true, write: true, create: true, mode: 0o600 });
  let locked = false;
  try {
    locked = file.tryLockSync(true);
  } catch {
    locked = true; // no advisory locks on this file system: nothing to enforce
  }
  if (!locked) {
    file.close();
    throw new DataDirInUse(
      `the data directory ${dir} is in use by another running socp node: each server needs its own ` +
        "--data DIR (and its own --port)",
    );
  }
  return file;
}
