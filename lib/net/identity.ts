/**
 * The node's identity: a UUID v4 server id and an RSA-4096 key, created on the first run and reused. The
 * private key is stored in SQLite sealed under a passphrase: `SOCP_NODE_PASSPHRASE` when set, otherwise a
 * random secret kept in `<data>/node.secret` (mode 0600), so a copy of the database alone does not reveal it.
 *
 * @module
 */
import { join } from "node:path";
import { openPrivateKey, sealPrivateKey } from "../crypto/keyfile.ts";
import { generateKeyPair, PrivateKey } from "../crypto/rsa.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import type { Store } from "../store/sqlite.ts";

/** A loaded identity. */
export interface Identity {
  serverId: string;
  key: PrivateKey;
  created: boolean;
}

export async function nodeSecret(dataDir: string, passphrase?: string): Promise<string> {
  if (passphrase) return passphrase;
  const path = join(dataDir, "node.secret");
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const secret = encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  await Deno.writeTextFile(path, secret + "\n", { mode: 0o600, createNew: true });
  return secret;
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
    const pkcs8 = await openPrivateKey(existing.sealed, secret).catch(() => {
      throw new Error(
        "cannot open the node identity key: set SOCP_NODE_PASSPHRASE to the passphrase it was created with, " +
          `or restore ${join(dataDir, "node.secret")}`,
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
