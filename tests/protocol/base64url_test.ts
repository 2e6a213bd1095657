import assert from "node:assert/strict";
import { decodeBase64Url, encodeBase64Url, isBase64Url } from "../../lib/protocol/base64url.ts";

const enc = new TextEncoder();

Deno.test("encodeBase64Url() uses the URL-safe alphabet and no padding (RFC 4648 vectors)", () => {
  const vectors: [string, string][] = [["", ""], ["f", "Zg"], ["fo", "Zm8"], ["foo", "Zm9v"], [
    "foob",
    "Zm9vYg",
  ], [
    "fooba",
    "Zm9vYmE",
  ], ["foobar", "Zm9vYmFy"]];
  for (const [plain, b64] of vectors) assert.equal(encodeBase64Url(enc.encode(plain)), b64);
  assert.equal(encodeBase64Url(new Uint8Array([0xfb, 0xff, 0xfe])), "-__-");
});

Deno.test("decodeBase64Url() accepts padded input and the standard alphabet", () => {
  assert.deepEqual(decodeBase64Url("Zm8="), enc.encode("fo"));
  assert.deepEqual(decodeBase64Url("Zm8"), enc.encode("fo"));
  assert.deepEqual(decodeBase64Url("+//+"), new Uint8Array([0xfb, 0xff, 0xfe]));
  assert.deepEqual(decodeBase64Url("-__-"), new Uint8Array([0xfb, 0xff, 0xfe]));
});

Deno.test("decodeBase64Url() returns null for text that is not base64", () => {
  for (const bad of ["a", "ab!c", "Zm9v===", "Zm=9v", "é"]) assert.equal(decodeBase64Url(bad), null, bad);
});

Deno.test("encode/decode round-trips every length up to 300 bytes", () => {
  for (let n = 0; n < 300; n++) {
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    const text = encodeBase64Url(bytes);
    assert.ok(isBase64Url(text));
    assert.deepEqual(decodeBase64Url(text), bytes);
    // Node's own encoder agrees.
    assert.equal(text, Buffer.from(bytes).toString("base64url"));
  }
});
import { Buffer } from "node:buffer";
