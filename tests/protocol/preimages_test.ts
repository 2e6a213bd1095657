import assert from "node:assert/strict";
import { decodeBase64Url } from "../../lib/protocol/base64url.ts";
import {
  dmPreimage,
  dmPreimageVariants,
  fileStartPreimage,
  keySharePreimage,
  publicPreimage,
  publicPreimageVariants,
} from "../../lib/protocol/preimages.ts";

const dec = new TextDecoder();

Deno.test("dmPreimage() is ciphertext + from + to + decimal ts", () => {
  assert.equal(
    dec.decode(dmPreimage({ ciphertext: "Q1Q", from: "u1", to: "u2", ts: 1700000000000 })),
    "Q1Qu1u21700000000000",
  );
});

Deno.test("dmPreimageVariants() lists text, raw bytes, then canonical JSON (PROFILE §4 order)", () => {
  const f = { ciphertext: "AAEC", from: "u1", to: "u2", ts: 5 };
  const [text, raw, json] = dmPreimageVariants(f);
  assert.equal(dec.decode(text), "AAECu1u25");
  assert.deepEqual(raw, new Uint8Array([0, 1, 2, ...new TextEncoder().encode("u1u25")]));
  assert.deepEqual(decodeBase64Url("AAEC"), new Uint8Array([0, 1, 2]));
  assert.equal(dec.decode(json), '{"ciphertext":"AAEC","from":"u1","to":"u2","ts":5}');
});

Deno.test("publicPreimage() and variants omit `to`", () => {
  assert.equal(dec.decode(publicPreimage({ ciphertext: "c", from: "u1", ts: 9 })), "cu19");
  const forms = publicPreimageVariants({ ciphertext: "AAEC", from: "u1", ts: 9 }).map((b) => b.length);
  assert.equal(forms.length, 3);
});

Deno.test("keySharePreimage() is canonical JSON of shares + creator_pub", () => {
  const m = keySharePreimage([{ wrapped_public_channel_key: "w", member: "m" }], "PUB");
  assert.equal(dec.decode(m), '[{"member":"m","wrapped_public_channel_key":"w"}]PUB');
});

Deno.test("fileStartPreimage() binds id, hash, size, ids and ts; public mode omits `to`", () => {
  const base = { file_id: "f", sha256: "ab", size: 10, from: "u1", ts: 3 };
  assert.equal(dec.decode(fileStartPreimage({ ...base, to: "u2" })), "fab10u1u23");
  assert.equal(dec.decode(fileStartPreimage(base)), "fab10u13");
});
