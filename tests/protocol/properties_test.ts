/** Property-based tests (fast-check): the parser never throws, codecs round-trip, signatures are order-free. */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { decodeBase64Url, encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { parseFrame, parseObject } from "../../lib/protocol/envelope.ts";
import { decodePublicKey } from "../../lib/protocol/keys.ts";
import { PAYLOADS } from "../../lib/protocol/messages.ts";

const RUNS = { numRuns: 2000 };

Deno.test("parseFrame() never throws, whatever the text", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 400 }), (s) => {
      const r = parseFrame(s);
      assert.equal(typeof r.ok, "boolean");
    }),
    RUNS,
  );
});

Deno.test("parseObject() never throws on arbitrary JSON objects, including every type with random payloads", () => {
  const types = fc.constantFrom(...Object.keys(PAYLOADS), "MSG_PRIVATE", "NOPE");
  const obj = fc.record({
    type: fc.oneof(types, fc.anything()),
    from: fc.oneof(fc.string(), fc.anything()),
    to: fc.oneof(fc.string(), fc.anything()),
    ts: fc.oneof(fc.integer(), fc.double(), fc.anything()),
    payload: fc.oneof(fc.object(), fc.jsonValue(), fc.anything()),
    sig: fc.oneof(fc.string(), fc.anything()),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(obj, (o) => {
      const r = parseObject(o as Record<string, unknown>);
      if (!r.ok) assert.ok(r.error.detail.length > 0);
    }),
    RUNS,
  );
});

Deno.test("decodePublicKey() never throws on arbitrary strings or bytes", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 600 }).map(encodeBase64Url)), (s) => {
      decodePublicKey(s);
    }),
    RUNS,
  );
});

Deno.test("base64url round-trips any bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1000 }), (b) => {
      assert.deepEqual(decodeBase64Url(encodeBase64Url(b)), b);
    }),
    RUNS,
  );
});

Deno.test("canonicalJson() is independent of key order and parses back to the same value", () => {
  const json = fc.jsonValue({ maxDepth: 4 }).filter((v) => !JSON.stringify(v).includes("-0"));
  fc.assert(
    fc.property(json, (v) => {
      const c = canonicalJson(v);
      assert.deepEqual(JSON.parse(c), JSON.parse(JSON.stringify(v)));
      const shuffled = JSON.parse(
        JSON.stringify(
          v,
          (_k, x) =>
            x && typeof x === "object" && !Array.isArray(x)
              ? Object.fromEntries(Object.entries(x).reverse())
              : x,
        ),
      );
      assert.equal(canonicalJson(shuffled), c);
      assert.ok(/^[\x20-\x7e]*$/.test(c), "ASCII only");
    }),
    RUNS,
  );
});
