/**
 * The frames that once ended the process (issue 7): non-finite numbers and deep nesting. Parsing and canonical
 * JSON must refuse them as values, never throw.
 */
import assert from "node:assert/strict";
import { canonicalJson, canonicalJsonResult, MAX_JSON_DEPTH } from "../../lib/protocol/canonical_json.ts";
import { parseFrame, parseObject } from "../../lib/protocol/envelope.ts";

const NOW = 1_700_000_000_000;
const U = "a11ce000-0000-4000-8000-000000000001";

/** Nest `leaf` `n` levels deep in objects `{"a": …}`. */
function deepObject(n: number, leaf = "1"): string {
  return '{"a":'.repeat(n) + leaf + "}".repeat(n);
}

const CRASHERS: [string, string][] = [
  [
    "1e999 in a HEARTBEAT payload",
    `{"type":"HEARTBEAT","from":"x","to":"y","ts":${NOW},"payload":{"a":1e999}}`,
  ],
  [
    "-1e400 in a MSG_DIRECT payload",
    `{"type":"MSG_DIRECT","from":"${U}","to":"${U}","ts":${NOW},"payload":{"ciphertext":"x","sender_pub":"p","content_sig":"s","n":-1e400}}`,
  ],
  [
    "meta.age = 1e400 in a USER_HELLO",
    `{"type":"USER_HELLO","from":"${U}","to":"","ts":${NOW},"payload":{"client":"c","pubkey":"k","meta":{"age":1e400}}}`,
  ],
  [
    "meta nesting 3,000 objects in a USER_HELLO",
    `{"type":"USER_HELLO","from":"${U}","to":"","ts":${NOW},"payload":{"client":"c","pubkey":"k","meta":${
      deepObject(3000)
    }}}`,
  ],
  [
    "10,000-deep arrays in a MSG_DIRECT",
    `{"type":"MSG_DIRECT","from":"${U}","to":"${U}","ts":${NOW},"payload":{"ciphertext":"x","sender_pub":"p","content_sig":"s","x":${
      "[".repeat(10_000) + "]".repeat(10_000)
    }}}`,
  ],
  ["a fraction in a payload", `{"type":"HEARTBEAT","from":"x","to":"y","ts":${NOW},"payload":{"a":1.5}}`],
  [
    "an unsafe integer",
    `{"type":"HEARTBEAT","from":"x","to":"y","ts":${NOW},"payload":{"a":9007199254740993}}`,
  ],
  ["a deep CTRL_CLOSE payload", `{"type":"CTRL_CLOSE","payload":${deepObject(100)}}`],
];

for (const [what, text] of CRASHERS) {
  Deno.test(`parseFrame() refuses ${what} with UNKNOWN_TYPE, without throwing`, () => {
    const r = parseFrame(text);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.error.code, "UNKNOWN_TYPE");
      assert.match(r.error.detail, /integers|nests deeper/);
    }
  });
}

Deno.test("parseFrame() accepts nesting up to the bound and refuses one level more", () => {
  // The envelope is level 0 and the payload level 1, so the payload may nest MAX_JSON_DEPTH - 1 more levels.
  const at = (n: number) =>
    `{"type":"HEARTBEAT","from":"x","to":"y","ts":${NOW},"payload":${deepObject(n, "{}")}}`;
  assert.equal(parseFrame(at(MAX_JSON_DEPTH - 2)).ok, true);
  assert.equal(parseFrame(at(MAX_JSON_DEPTH - 1)).ok, false);
});

Deno.test("parseObject() applies the same bounds to an object parsed elsewhere", () => {
  const r = parseObject({ type: "HEARTBEAT", from: "x", to: "y", ts: NOW, payload: { a: Infinity } });
  assert.equal(r.ok, false);
});

Deno.test("canonicalJsonResult() is total: errors for Infinity, NaN, functions and deep nesting", () => {
  assert.deepEqual(canonicalJsonResult({ b: 1, a: [true, null] }), {
    ok: true,
    text: '{"a":[true,null],"b":1}',
  });
  for (const bad of [{ a: Infinity }, [NaN], { f: () => 1 }, JSON.parse(deepObject(5000))]) {
    const r = canonicalJsonResult(bad);
    assert.equal(r.ok, false);
  }
  assert.throws(() => canonicalJson({ a: -Infinity }), TypeError);
});
