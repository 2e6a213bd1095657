import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import nodeCrypto from "node:crypto";
import {
  encryptTo,
  generateKeyPair,
  maxSaltLength,
  oaepBlockSize,
  sha256Hex,
  verifyAny,
  verifySignature,
} from "../../lib/crypto/rsa.ts";
import { decodeBase64Url, encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { fixtureKey, fixtureText } from "../helpers/keys.ts";

const enc = new TextEncoder();
const data = enc.encode("the quick brown fox");

Deno.test("RSA-4096 sizes: salt 478, OAEP block 446", () => {
  assert.equal(maxSaltLength(512), 478);
  assert.equal(oaepBlockSize(512), 446);
});

Deno.test("sign() uses salt 478: node:crypto verifies with saltLength 478 and refuses 32", async () => {
  const key = await fixtureKey("user1");
  const sig = Buffer.from(decodeBase64Url(await key.sign(data))!);
  const pub = fixtureText("user1.pub.pem");
  const verify = (saltLength: number) =>
    nodeCrypto.verify("sha256", data, {
      key: pub,
      padding: nodeCrypto.constants.RSA_PKCS1_PSS_PADDING,
      saltLength,
    }, sig);
  assert.equal(verify(478), true);
  assert.equal(verify(32), false);
});

Deno.test("verifySignature() accepts node:crypto signatures with salt 32 and with salt 478", async () => {
  const key = await fixtureKey("user1");
  const priv = fixtureText("user1.pem");
  for (const saltLength of [32, 478]) {
    const sig = nodeCrypto.sign("sha256", data, {
      key: priv,
      padding: nodeCrypto.constants.RSA_PKCS1_PSS_PADDING,
      saltLength,
    });
    assert.equal(
      await verifySignature(key.publicKey, data, encodeBase64Url(sig)),
      true,
      `salt ${saltLength}`,
    );
  }
});

Deno.test("verifySignature() refuses a tampered message, another key, and garbage", async () => {
  const k1 = await fixtureKey("user1");
  const k2 = await fixtureKey("user2");
  const sig = await k1.sign(data);
  assert.equal(await verifySignature(k1.publicKey, enc.encode("other"), sig), false);
  assert.equal(await verifySignature(k2.publicKey, data, sig), false);
  assert.equal(await verifySignature(k1.publicKey, data, "AAAA"), false);
  assert.equal(await verifySignature("not a key", data, sig), false);
});

Deno.test("verifyAny() reports which preimage verified", async () => {
  const k = await fixtureKey("user1");
  const sig = await k.sign(enc.encode("second"));
  assert.equal(await verifyAny(k.publicKey, [enc.encode("first"), enc.encode("second")], sig), 1);
});

Deno.test("encryptTo() splits long plaintext into 446-byte OAEP blocks that node:crypto decrypts", async () => {
  const k = await fixtureKey("user1");
  const plain = crypto.getRandomValues(new Uint8Array(1000));
  const ct = decodeBase64Url(await encryptTo(k.publicKey, plain))!;
  assert.equal(ct.length, 3 * 512);
  const parts = [0, 1, 2].map((i) =>
    nodeCrypto.privateDecrypt(
      {
        key: fixtureText("user1.pem"),
        padding: nodeCrypto.constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: "sha256",
      },
      ct.subarray(i * 512, (i + 1) * 512),
    )
  );
  assert.deepEqual(new Uint8Array(Buffer.concat(parts)), plain);
  assert.deepEqual(await k.decrypt(encodeBase64Url(ct)), plain);
});

Deno.test("one-block messages are the standard's single OAEP ciphertext (exactly 446 bytes fits)", async () => {
  const k = await fixtureKey("user1");
  for (const n of [0, 1, 446]) {
    const ct = decodeBase64Url(await encryptTo(k.publicKey, new Uint8Array(n)))!;
    assert.equal(ct.length, 512, `${n} bytes`);
  }
  assert.equal(decodeBase64Url(await encryptTo(k.publicKey, new Uint8Array(447)))!.length, 1024);
});

Deno.test("decrypt() accepts node:crypto OAEP-SHA256 ciphertext and refuses a wrong length", async () => {
  const k = await fixtureKey("user2");
  const pub = nodeCrypto.createPublicKey(fixtureText("user2.pem"));
  const ct = nodeCrypto.publicEncrypt(
    { key: pub, padding: nodeCrypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" },
    enc.encode("hello"),
  );
  assert.equal(new TextDecoder().decode(await k.decrypt(encodeBase64Url(ct))), "hello");
  await assert.rejects(() => k.decrypt(encodeBase64Url(ct.subarray(1))), /multiple of 512/);
});

Deno.test("generateKeyPair() makes an RSA-4096 key with e=65537 that signs and verifies", async () => {
  const k = await generateKeyPair(4096);
  const pub = nodeCrypto.createPublicKey({ key: Buffer.from(k.spki), format: "der", type: "spki" });
  assert.equal(pub.asymmetricKeyDetails?.modulusLength, 4096);
  assert.equal(pub.asymmetricKeyDetails?.publicExponent, 65537n);
  assert.ok(await verifySignature(k.publicKey, data, await k.sign(data)));
});

Deno.test("sha256Hex() matches node:crypto", async () => {
  assert.equal(await sha256Hex("abc"), nodeCrypto.createHash("sha256").update("abc").digest("hex"));
});
