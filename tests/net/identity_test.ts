/**
 * The node's identity at rest (lib/net/identity.ts) on a real data directory and SQLite file: sealed with HKDF
 * under the random key the node writes to `node.secret` (no stretching needed for a 256-bit random key), with
 * PBKDF2 under `SOCP_NODE_PASSPHRASE` or under a `node.secret` the node did not write (an older version's, or
 * one edited by hand: it cannot be told from a typed passphrase); identities sealed by older versions open.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { loadOrCreateIdentity, nodeSecret, RANDOM_SECRET_PREFIX } from "../../lib/net/identity.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { Store } from "../../lib/store/sqlite.ts";
import { fixtureKey } from "../helpers/keys.ts";

/** A temporary data directory, removed at the end of the scope. */
function tempDir() {
  const path = Deno.makeTempDirSync({ prefix: "socp-identity-" });
  return { path, [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }) };
}

function withStore<T>(dir: string, fn: (s: Store) => T | Promise<T>): Promise<T> {
  const store = Store.open(join(dir, "socp.db"));
  return Promise.resolve().then(() => fn(store)).finally(() => store.close());
}

const kdfOf = (dir: string) => withStore(dir, (s) => s.getIdentity()!.sealed.kdf);

/** Store fixture node1 as the identity of `dir`, sealed under `secret`. */
async function storeIdentity(dir: string, secret: Parameters<typeof sealPrivateKey>[1]) {
  const key = await fixtureKey("node1");
  const sealed = await sealPrivateKey(await key.exportPkcs8(), secret);
  await withStore(
    dir,
    (s) => s.setIdentity({ serverId: crypto.randomUUID(), pubkey: key.publicKey, sealed }, 1),
  );
  return key;
}

Deno.test("a new node writes a marked random key to node.secret, seals its identity with HKDF, and opens it again", async () => {
  using dir = tempDir();
  const made = await withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { keyBits: 2048, now: 1 }));
  assert.equal(made.created, true);
  const text = Deno.readTextFileSync(join(dir.path, "node.secret")).trim();
  assert.ok(text.startsWith(RANDOM_SECRET_PREFIX), text.slice(0, 20));
  assert.equal(text.length, RANDOM_SECRET_PREFIX.length + 43, "32 random bytes, base64url");
  assert.equal(await kdfOf(dir.path), "HKDF-SHA256");
  await withStore(dir.path, (s) => assert.ok(!JSON.stringify(s.getIdentity()).includes(text.slice(-43))));
  const again = await withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { now: 2 }));
  assert.equal(again.created, false);
  assert.equal(again.serverId, made.serverId);
  assert.equal(again.key.publicKey, made.key.publicKey);
});

Deno.test("under SOCP_NODE_PASSPHRASE the identity is stretched with PBKDF2; the wrong one says what to do", async () => {
  using dir = tempDir();
  const passphrase = "a passphrase someone chose";
  const made = await withStore(
    dir.path,
    (s) => loadOrCreateIdentity(s, dir.path, { passphrase, keyBits: 2048, now: 1 }),
  );
  assert.equal(await kdfOf(dir.path), "PBKDF2-SHA256");
  const again = await withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { passphrase, now: 2 }));
  assert.equal(again.key.publicKey, made.key.publicKey);
  await assert.rejects(
    () =>
      withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { passphrase: "another one", now: 3 })),
    /cannot open the node identity key \(wrong passphrase.*\): set SOCP_NODE_PASSPHRASE to the passphrase/,
  );
});

Deno.test("an identity sealed under node.secret does not open with SOCP_NODE_PASSPHRASE set, and says to unset it", async () => {
  using dir = tempDir();
  await storeIdentity(dir.path, await nodeSecret(dir.path));
  const key = Deno.readTextFileSync(join(dir.path, "node.secret")).trim().slice(RANDOM_SECRET_PREFIX.length);
  await assert.rejects(
    () => withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { passphrase: key, now: 1 })),
    /sealed under .*node\.secret \(the key was sealed under a random key.*\); unset SOCP_NODE_PASSPHRASE/,
  );
});

Deno.test("an identity an older version sealed with PBKDF2 under its unmarked node.secret still opens", async () => {
  using dir = tempDir();
  const old = encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  Deno.writeTextFileSync(join(dir.path, "node.secret"), old + "\n", { mode: 0o600 });
  assert.equal(await nodeSecret(dir.path), old, "an unmarked file is a passphrase");
  const key = await storeIdentity(dir.path, old);
  const id = await withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { now: 1 }));
  assert.equal(id.key.publicKey, key.publicKey);
});

Deno.test("a node.secret typed by hand is stretched, even a long one in the base64url alphabet", async () => {
  for (const typed of ["hunter2", "correcthorsebatterystaplecorrecthorsebattery"]) {
    using dir = tempDir();
    Deno.writeTextFileSync(join(dir.path, "node.secret"), typed + "\n", { mode: 0o600 });
    assert.equal(await nodeSecret(dir.path), typed);
    await withStore(dir.path, (s) => loadOrCreateIdentity(s, dir.path, { keyBits: 2048, now: 1 }));
    assert.equal(await kdfOf(dir.path), "PBKDF2-SHA256", typed);
  }
});
