import assert from "node:assert/strict";
import { decodeBase64Url, encodeBase64Url } from "../../lib/protocol/base64url.ts";
import {
  checkRsaKey,
  decodePublicKey,
  parseAcceptableKey,
  sameKeyMaterial,
  spkiToB64Pem,
  spkiToPem,
} from "../../lib/protocol/keys.ts";
import { fixtureKey, fixtureText } from "../helpers/keys.ts";

// openssl's own DER SubjectPublicKeyInfo of fixture user1 (`openssl pkey -pubout -outform DER | base64`).
const OPENSSL_SPKI = decodeBase64Url(fixtureText("user1.spki.b64").trim())!;
const enc = new TextEncoder();

Deno.test("decodePublicKey() reads every accepted form of one key to the same SPKI bytes", () => {
  const forms: [string, string][] = [
    ["spki", encodeBase64Url(OPENSSL_SPKI)],
    ["spki", Buffer.from(OPENSSL_SPKI).toString("base64")], // standard alphabet, padded
    ["pem", fixtureText("user1.pub.pem")],
    ["pem", fixtureText("user1.pkcs1.pem")], // "RSA PUBLIC KEY" (PKCS#1) PEM
    ["b64-pem", encodeBase64Url(enc.encode(fixtureText("user1.pub.pem")))],
  ];
  for (const [form, text] of forms) {
    const d = decodePublicKey(text);
    assert.ok(d.ok, `${form}: ${!d.ok && d.reason}`);
    assert.equal(d.key.form, form);
    assert.deepEqual(d.key.spki, OPENSSL_SPKI, form);
    assert.equal(d.key.bits, 4096);
  }
});

Deno.test("decodePublicKey() wraps DER PKCS#1 into the SPKI openssl produces", () => {
  const pem = fixtureText("user1.pkcs1.pem");
  const der = decodeBase64Url(pem.replace(/-----[^-]+-----|\s/g, ""))!;
  const d = decodePublicKey(encodeBase64Url(der));
  assert.ok(d.ok);
  assert.equal(d.key.form, "pkcs1");
  assert.deepEqual(d.key.spki, OPENSSL_SPKI);
});

Deno.test("spkiToPem() and spkiToB64Pem() produce what openssl and peers read", () => {
  assert.equal(spkiToPem(OPENSSL_SPKI), fixtureText("user1.pub.pem"));
  assert.ok(spkiToB64Pem(OPENSSL_SPKI).startsWith("LS0tLS1CRUdJTi"));
});

Deno.test("checkRsaKey() refuses 2048-bit, 1024-bit and e=3 keys with a reason", async () => {
  const k2048 = decodePublicKey((await fixtureKey("rsa2048")).publicKey);
  const k1024 = decodePublicKey((await fixtureKey("rsa1024")).publicKey);
  const e3 = decodePublicKey((await fixtureKey("rsa4096_e3")).publicKey);
  assert.ok(k2048.ok && k1024.ok && e3.ok);
  assert.match(checkRsaKey(k2048.key)!, /2048-bit/);
  assert.match(checkRsaKey(k1024.key)!, /1024-bit/);
  assert.match(checkRsaKey(e3.key)!, /65537/);
  assert.equal(checkRsaKey(k1024.key, { allowedBits: [1024, 4096] }), null);
});

Deno.test("parseAcceptableKey() refuses garbage and non-RSA keys without throwing", () => {
  for (
    const bad of [
      "",
      "!!!",
      "AAAA",
      "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K",
      "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----",
      42,
      null,
    ]
  ) {
    const r = parseAcceptableKey(bad);
    assert.equal(r.ok, false, String(bad));
  }
  // An EC key (P-256 SPKI) is not RSA.
  const ec =
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAETQjCy6l-NG8maV4BECtQZ8CBUmz8HXoHikIrrJ8dvQ4evVc_ozHIAsh2EVafCYY3irGrJVfQ6hyeSlWWzoAQtA";
  const r = parseAcceptableKey(ec);
  assert.ok(!r.ok);
  assert.match(r.reason, /not an RSA public key/);
});

Deno.test("sameKeyMaterial() sees through encodings and tells different keys apart", async () => {
  const a = encodeBase64Url(OPENSSL_SPKI);
  assert.ok(sameKeyMaterial(a, fixtureText("user1.pkcs1.pem")));
  assert.ok(sameKeyMaterial(a, encodeBase64Url(enc.encode(fixtureText("user1.pub.pem")))));
  assert.ok(!sameKeyMaterial(a, (await fixtureKey("user2")).publicKey));
  assert.ok(!sameKeyMaterial(a, "garbage"));
});
import { Buffer } from "node:buffer";
