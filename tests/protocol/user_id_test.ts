import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sha256, toHex } from "../../lib/protocol/sha256.ts";
import { derivesId, deriveUserId, userIdFromSpki } from "../../lib/protocol/user_id.ts";
import { decodePublicKey, spkiToB64Pem, spkiToPem } from "../../lib/protocol/keys.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";

Deno.test("sha256() matches node:crypto on lengths around every block boundary", () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4097]) {
    const data = new Uint8Array(n).map((_, i) => (i * 31 + n) & 0xff);
    assert.equal(toHex(sha256(data)), createHash("sha256").update(data).digest("hex"), `length ${n}`);
  }
});

Deno.test("userIdFromSpki() is a UUID v4 of the hash's first 16 bytes (PROFILE §16)", () => {
  const spki = new TextEncoder().encode("some key bytes");
  const h = createHash("sha256").update(spki).digest();
  const id = userIdFromSpki(spki);
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const b = h.subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  assert.equal(id.replaceAll("-", ""), b.toString("hex"));
});

Deno.test("deriveUserId() gives one id for every encoding of one key, none for a bad key", async () => {
  const pair = await crypto.subtle.generateKey(
    { name: "RSA-PSS", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
    true,
    ["sign", "verify"],
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  const id = deriveUserId(encodeBase64Url(spki))!;
  assert.equal(id, userIdFromSpki(decodePublicKey(encodeBase64Url(spki)).ok ? spki : new Uint8Array()));
  assert.equal(deriveUserId(spkiToPem(spki)), id);
  assert.equal(deriveUserId(spkiToB64Pem(spki)), id);
  assert.ok(derivesId(encodeBase64Url(spki), id));
  assert.ok(!derivesId(encodeBase64Url(spki), crypto.randomUUID()));
  assert.equal(deriveUserId("AAAA"), undefined);
});
