import assert from "node:assert/strict";
import { verifySignature } from "../../lib/crypto/rsa.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { Signer } from "../../lib/net/signer.ts";
import { fixtureKey } from "../helpers/keys.ts";

Deno.test("Signer signs each distinct payload once, even when asked concurrently or in another key order", async () => {
  const key = await fixtureKey("user1");
  const s = new Signer(key);
  const [a, b, c] = await Promise.all([s.sign({ x: 1, y: "z" }), s.sign({ y: "z", x: 1 }), s.sign({ x: 2 })]);
  assert.equal(a, b);
  assert.notEqual(a, c);
  assert.equal(s.signatures, 2);
  assert.ok(
    await verifySignature(key.publicKey, new TextEncoder().encode(canonicalJson({ x: 1, y: "z" })), a),
  );
});

Deno.test("Signer keeps at most `max` signatures", async () => {
  const s = new Signer(await fixtureKey("user1"), 2);
  await s.sign({ n: 1 });
  await s.sign({ n: 2 });
  await s.sign({ n: 3 });
  await s.sign({ n: 1 }); // evicted, so signed again
  assert.equal(s.signatures, 4);
});
