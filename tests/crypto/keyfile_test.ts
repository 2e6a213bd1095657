import assert from "node:assert/strict";
import {
  openPrivateKey,
  openUserKeyFile,
  parseUserKeyFile,
  sealPrivateKey,
  sealUserKeyFile,
  WrongPassphrase,
} from "../../lib/crypto/keyfile.ts";
import { verifySignature } from "../../lib/crypto/rsa.ts";
import { fixtureKey } from "../helpers/keys.ts";

Deno.test("sealPrivateKey() encrypts so the bytes are not visible, and openPrivateKey() restores them", async () => {
  const secret = new TextEncoder().encode("PRIVATE-KEY-MATERIAL-".repeat(20));
  const sealed = await sealPrivateKey(secret, "correct horse");
  assert.ok(!JSON.stringify(sealed).includes("PRIVATE-KEY"));
  assert.equal(sealed.iterations, 600_000);
  assert.deepEqual(await openPrivateKey(sealed, "correct horse"), secret);
});

Deno.test("openPrivateKey() throws WrongPassphrase for a wrong passphrase or tampered data", async () => {
  const sealed = await sealPrivateKey(new Uint8Array([1, 2, 3]), "right");
  await assert.rejects(() => openPrivateKey(sealed, "wrong"), WrongPassphrase);
  const tampered = { ...sealed, data: sealed.data.slice(0, -2) + (sealed.data.endsWith("AA") ? "BA" : "AA") };
  await assert.rejects(() => openPrivateKey(tampered, "right"), WrongPassphrase);
});

Deno.test("two seals of the same key differ (random salt and IV)", async () => {
  const a = await sealPrivateKey(new Uint8Array([9]), "p");
  const b = await sealPrivateKey(new Uint8Array([9]), "p");
  assert.notEqual(a.salt, b.salt);
  assert.notEqual(a.data, b.data);
});

Deno.test("a user key file round-trips through its JSON, and a non-extractable open cannot export", async () => {
  const key = await fixtureKey("user1");
  const file = await sealUserKeyFile({ userId: "u-1", displayName: "alice", key }, "pw");
  const text = JSON.stringify(file);
  assert.equal(JSON.parse(text).pubkey, key.publicKey);
  const parsed = parseUserKeyFile(text);
  assert.ok(parsed.ok);
  await assert.rejects(() => openUserKeyFile(parsed.file, "nope"), WrongPassphrase);
  const opened = await openUserKeyFile(parsed.file, "pw", { extractable: false });
  assert.equal(opened.userId, "u-1");
  assert.equal(opened.displayName, "alice");
  assert.equal(opened.key.publicKey, key.publicKey);
  assert.equal(opened.key.cryptoKeys().signKey.extractable, false);
  assert.equal(opened.key.cryptoKeys().decryptKey.extractable, false);
  await assert.rejects(() => opened.key.exportPkcs8());
  const sig = await opened.key.sign(new Uint8Array([1, 2]));
  assert.ok(await verifySignature(key.publicKey, new Uint8Array([1, 2]), sig));
});

Deno.test("parseUserKeyFile() refuses what is not a key file, without throwing", () => {
  for (const t of ["", "{", "null", "[]", '{"format":"socp-user-key/1"}', '{"format":"x","user_id":"a"}']) {
    const r = parseUserKeyFile(t);
    assert.equal(r.ok, false, t);
  }
});
