/**
 * The node's identity at rest (lib/net/identity.ts) on a real data directory and SQLite file: sealed with HKDF
 * under the random `node.secret` (no stretching needed for a 256-bit random key), with PBKDF2 under
 * `SOCP_NODE_PASSPHRASE`; identities sealed by older versions (PBKDF2 under `node.secret`) still open.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { loadOrCreateIdentity, nodeSecret } from "../../lib/net/identity.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { Store } from "../../lib/store/sqlite.ts";
import { fixtureKey } from "../helpers/keys.ts";

function withStore<T>(dir: string, fn: (s: Store) => Promise<T>): Promise<T> {
  const store = Store.open(join(dir, "socp.db"));
  return fn(store).finally(() => store.close());
}

/** A data directory whose store already holds fixture node1 as its identity, sealed as `seal` says. */
async function dirWith(seal: (pkcs8: Uint8Array, dir: string) => ReturnType<typeof sealPrivateKey>) {
  const dir = Deno.makeTempDirSync({ prefix: "socp-identity-" });
  const key = await fixtureKey("node1");
  const sealed = await seal(await key.exportPkcs8(), dir);
  await withStore(dir, (s) => {
    s.setIdentity({ serverId: crypto.randomUUID(), pubkey: key.publicKey, sealed }, 1);
    return Promise.resolve();
  });
  return { dir, key };
}

Deno.test("a new node seals its identity with HKDF under its random node.secret, and opens it again", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-identity-" });
  const made = await withStore(dir, (s) => loadOrCreateIdentity(s, dir, { keyBits: 2048, now: 1 }));
  assert.equal(made.created, true);
  const secret = Deno.readTextFileSync(join(dir, "node.secret")).trim();
  assert.equal(secret.length, 43, "32 random bytes, base64url");
  await withStore(dir, (s) => {
    const sealed = s.getIdentity()!.sealed;
    assert.equal(sealed.kdf, "HKDF-SHA256");
    assert.ok(!JSON.stringify(sealed).includes(secret));
    return Promise.resolve();
  });
  const again = await withStore(dir, (s) => loadOrCreateIdentity(s, dir, { now: 2 }));
  assert.equal(again.created, false);
  assert.equal(again.serverId, made.serverId);
  assert.equal(again.key.publicKey, made.key.publicKey);
});

Deno.test("under SOCP_NODE_PASSPHRASE the identity is stretched with PBKDF2; the wrong secret says what to do", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-identity-" });
  const passphrase = "a passphrase someone chose";
  const made = await withStore(
    dir,
    (s) => loadOrCreateIdentity(s, dir, { passphrase, keyBits: 2048, now: 1 }),
  );
  await withStore(dir, (s) => {
    const sealed = s.getIdentity()!.sealed;
    assert.equal(sealed.kdf, "PBKDF2-SHA256");
    assert.equal(sealed.iterations, 600_000);
    return Promise.resolve();
  });
  const again = await withStore(dir, (s) => loadOrCreateIdentity(s, dir, { passphrase, now: 2 }));
  assert.equal(again.key.publicKey, made.key.publicKey);
  await assert.rejects(
    () => withStore(dir, (s) => loadOrCreateIdentity(s, dir, { passphrase: "another one entirely", now: 3 })),
    /cannot open the node identity key: set SOCP_NODE_PASSPHRASE/,
  );
});

Deno.test("an identity sealed under node.secret cannot be opened by a passphrase equal to the secret's text", async () => {
  const { dir } = await dirWith(async (pkcs8, d) => sealPrivateKey(pkcs8, await nodeSecret(d)));
  const text = Deno.readTextFileSync(join(dir, "node.secret")).trim();
  await assert.rejects(
    () => withStore(dir, (s) => loadOrCreateIdentity(s, dir, { passphrase: text, now: 1 })),
    /cannot open the node identity key/,
  );
});

Deno.test("an identity an older version sealed with PBKDF2 under node.secret still opens", async () => {
  const text = encodeBase64Url(crypto.getRandomValues(new Uint8Array(32)));
  const { dir, key } = await dirWith((pkcs8, d) => {
    Deno.writeTextFileSync(join(d, "node.secret"), text + "\n", { mode: 0o600 });
    return sealPrivateKey(pkcs8, text);
  });
  const id = await withStore(dir, (s) => loadOrCreateIdentity(s, dir, { now: 1 }));
  assert.equal(id.key.publicKey, key.publicKey);
});

Deno.test("a node.secret edited by hand into a short word is treated as a passphrase (stretched)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-identity-" });
  Deno.writeTextFileSync(join(dir, "node.secret"), "hunter2\n", { mode: 0o600 });
  assert.equal(await nodeSecret(dir), "hunter2");
  await withStore(dir, (s) => loadOrCreateIdentity(s, dir, { keyBits: 2048, now: 1 }));
  await withStore(dir, (s) => {
    assert.equal(s.getIdentity()!.sealed.kdf, "PBKDF2-SHA256");
    return Promise.resolve();
  });
});
