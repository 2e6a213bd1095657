import assert from "node:assert/strict";
import { openPrivateKey, sealPrivateKey, WrongPassphrase } from "../../lib/crypto/keyfile.ts";

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
