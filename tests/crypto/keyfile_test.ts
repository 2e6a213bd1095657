import assert from "node:assert/strict";
import {
  KeyFileError,
  openPrivateKey,
  openUserKeyFile,
  parseUserKeyFile,
  type SealedKey,
  sealPrivateKey,
  sealUserKeyFile,
  type UserKeyFile,
  WrongPassphrase,
} from "../../lib/crypto/keyfile.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";
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

/** A v1-style sealed key made with any iteration count (what a weakened or foreign file holds). */
async function sealWith(pkcs8: Uint8Array, passphrase: string, iterations: number): Promise<SealedKey> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const base = await crypto.subtle.importKey("raw", new TextEncoder().encode(passphrase), "PBKDF2", false, [
    "deriveKey",
  ]);
  const key = await crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt"],
  );
  const data = new Uint8Array(
    await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, new Uint8Array(pkcs8)),
  );
  return {
    kdf: "PBKDF2-SHA256",
    iterations,
    salt: encodeBase64Url(salt),
    cipher: "AES-256-GCM",
    iv: encodeBase64Url(iv),
    data: encodeBase64Url(data),
  };
}

Deno.test("a key file's metadata is authenticated: an edited user id, key or name does not open", async () => {
  const key = await fixtureKey("user1");
  const other = await fixtureKey("user2");
  const file = await sealUserKeyFile({ userId: "u-1", displayName: "alice", key }, "passphrase");
  assert.equal(file.format, "socp-user-key/2");
  assert.equal(file.sealed.aad, "socp-user-key/2");
  for (
    const edited of [
      { ...file, user_id: "u-2" },
      { ...file, display_name: "mallory" },
      { ...file, pubkey: other.publicKey },
      { ...file, display_name: undefined },
    ]
  ) {
    const parsed = parseUserKeyFile(JSON.stringify(edited));
    assert.ok(parsed.ok);
    await assert.rejects(() => openUserKeyFile(parsed.file, "passphrase"), WrongPassphrase);
  }
  const opened = await openUserKeyFile(file, "passphrase");
  assert.equal(opened.userId, "u-1");
  assert.equal(opened.upgraded, undefined);
});

Deno.test("an old (format 1) key file opens, comes back upgraded to format 2, and a wrong public key is refused", async () => {
  const key = await fixtureKey("user1");
  const pkcs8 = await key.exportPkcs8();
  const old: UserKeyFile = {
    format: "socp-user-key/1",
    user_id: "u-old",
    display_name: "alice",
    pubkey: key.publicKey,
    sealed: await sealPrivateKey(pkcs8, "pw"),
  };
  const parsed = parseUserKeyFile(JSON.stringify(old));
  assert.ok(parsed.ok);
  const opened = await openUserKeyFile(parsed.file, "pw");
  assert.equal(opened.userId, "u-old");
  assert.ok(opened.upgraded);
  assert.equal(opened.upgraded.format, "socp-user-key/2");
  const again = await openUserKeyFile(opened.upgraded, "pw");
  assert.equal(again.userId, "u-old");
  assert.equal(again.displayName, "alice");
  assert.equal(again.key.publicKey, key.publicKey);
  await assert.rejects(
    () => openUserKeyFile({ ...opened.upgraded!, user_id: "u-new" }, "pw"),
    WrongPassphrase,
  );
  // A format 1 file whose public key is not its private key's (edited) is refused, not opened.
  const other = await fixtureKey("user2");
  await assert.rejects(
    () => openUserKeyFile({ ...old, pubkey: other.publicKey }, "pw"),
    { name: "KeyFileError", message: /not the public half/ },
  );
});

Deno.test("iteration counts below 600,000 or above 10,000,000 are refused with a clear error", async () => {
  const secret = new Uint8Array([1, 2, 3]);
  const weak = await sealWith(secret, "pw", 1000);
  await assert.rejects(() => openPrivateKey(weak, "pw"), {
    name: "KeyFileError",
    message: /asks for 1000 PBKDF2 iterations; at least 600,000 are required/,
  });
  const huge = { ...(await sealPrivateKey(secret, "pw")), iterations: 50_000_000 };
  await assert.rejects(() => openPrivateKey(huge, "pw"), {
    name: "KeyFileError",
    message: /50000000 PBKDF2 iterations; more than 10,000,000 is refused/,
  });
  for (const n of [Number.NaN, 600_000.5, -1]) {
    await assert.rejects(() => openPrivateKey({ ...weak, iterations: n }, "pw"), KeyFileError);
  }
  assert.deepEqual(await openPrivateKey(await sealPrivateKey(secret, "pw"), "pw"), secret);
});

const RANDOM_KEY = { randomKey: encodeBase64Url(new Uint8Array(32).map((_, i) => i * 7 + 1)) };

Deno.test("a random key seals with HKDF; only that random key opens it, never a passphrase", async () => {
  const secret = new TextEncoder().encode("PRIVATE-KEY-MATERIAL-".repeat(20));
  const sealed = await sealPrivateKey(secret, RANDOM_KEY);
  assert.equal(sealed.kdf, "HKDF-SHA256");
  assert.equal(sealed.iterations, 0);
  assert.ok(!JSON.stringify(sealed).includes("PRIVATE-KEY"));
  assert.deepEqual(await openPrivateKey(sealed, RANDOM_KEY), secret);
  // The key's text typed as a passphrase does not open it (and a user key file's passphrase never takes this path).
  await assert.rejects(() => openPrivateKey(sealed, RANDOM_KEY.randomKey), {
    name: "KeyFileError",
    message: /sealed under a random key .* a passphrase cannot open it/,
  });
  const other = { randomKey: encodeBase64Url(new Uint8Array(32).fill(9)) };
  await assert.rejects(() => openPrivateKey(sealed, other), WrongPassphrase);
  const tampered = { ...sealed, salt: encodeBase64Url(new Uint8Array(16)) };
  await assert.rejects(() => openPrivateKey(tampered, RANDOM_KEY), WrongPassphrase);
});

Deno.test("a random key shorter than 32 bytes (or not base64url) is refused for sealing and opening", async () => {
  for (const randomKey of [encodeBase64Url(new Uint8Array(31)), "not base64url!", ""]) {
    await assert.rejects(() => sealPrivateKey(new Uint8Array([1]), { randomKey }), KeyFileError);
  }
  const sealed = await sealPrivateKey(new Uint8Array([1]), RANDOM_KEY);
  await assert.rejects(
    () => openPrivateKey(sealed, { randomKey: encodeBase64Url(new Uint8Array(16)) }),
    KeyFileError,
  );
});

Deno.test("a key sealed with PBKDF2 under a random key's text (older nodes) still opens with that random key", async () => {
  const secret = new Uint8Array([4, 5, 6]);
  const old = await sealPrivateKey(secret, RANDOM_KEY.randomKey);
  assert.equal(old.kdf, "PBKDF2-SHA256");
  assert.deepEqual(await openPrivateKey(old, RANDOM_KEY), secret);
});

Deno.test("a user key file whose key is HKDF-sealed is refused: a passphrase is always stretched", async () => {
  const key = await fixtureKey("user1");
  const file = await sealUserKeyFile(
    { userId: "00000000-0000-4000-8000-000000000001", displayName: "alice", key },
    "long enough passphrase",
  );
  const forged: UserKeyFile = { ...file, sealed: { ...file.sealed, kdf: "HKDF-SHA256", iterations: 0 } };
  await assert.rejects(() => openUserKeyFile(forged, "long enough passphrase"), KeyFileError);
});
