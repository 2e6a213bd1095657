import assert from "node:assert/strict";
import { verifySignature } from "../../lib/crypto/rsa.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { Signer } from "../../lib/net/signer.ts";
import { sha256HexSync } from "../../lib/net/digest.ts";
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

Deno.test("Signer.text signs and serializes a kept frame once, however often it is sent", async () => {
  const key = await fixtureKey("user1");
  const s = new Signer(key, 1); // an LRU of one: only the per-frame cache can spare the second signature
  const advert = {
    type: "USER_ADVERTISE" as const,
    from: "S",
    to: "*",
    ts: 1,
    payload: { user_id: "u", server_id: "S" },
  };
  const first = s.text(advert, true);
  await s.sign({ other: 1 }); // evicts the advert's payload from the LRU
  const again = s.text(advert, true);
  assert.equal(first, again, "the same promise: no new work");
  const text = await again;
  assert.equal(s.signatures, 2);
  const f = JSON.parse(text);
  assert.deepEqual(f.payload, advert.payload);
  assert.ok(
    await verifySignature(key.publicKey, new TextEncoder().encode(canonicalJson(advert.payload)), f.sig),
  );
  // A relayed frame keeps its own signature.
  const relayed = { ...advert, sig: "THEIRS" };
  assert.equal(JSON.parse(await s.text(relayed, false)).sig, "THEIRS");
  assert.equal(s.signatures, 2);
});

Deno.test("Signer.textNow answers at once only what needs no new signature", async () => {
  const key = await fixtureKey("user1");
  const frame = (ts: number) => ({
    type: "ACK" as const,
    from: "S",
    to: "u",
    ts,
    payload: { msg_ref: "USER_HELLO", server_id: "S" },
  });
  const s = new Signer(key, 8, sha256HexSync);
  const first = frame(1);
  assert.equal(s.textNow(first, true), undefined, "a payload never signed: not now");
  assert.equal(s.textNow(first, true), undefined, "being signed: still not now");
  const text = await s.text(first, true);
  assert.equal(s.signatures, 1, "textNow started the signature; text waited for the same one");
  assert.equal(s.textNow(first, true), text);
  // Another frame object with the same payload: the cached signature, serialized now, with its own envelope.
  const now = s.textNow(frame(2), true);
  assert.ok(now !== undefined);
  const f = JSON.parse(now);
  assert.equal(f.ts, 2);
  assert.equal(f.sig, JSON.parse(text).sig);
  assert.equal(s.signatures, 1);
  assert.ok(
    await verifySignature(key.publicKey, new TextEncoder().encode(canonicalJson(first.payload)), f.sig),
  );
  // A frame relayed as it is never waits.
  assert.equal(JSON.parse(s.textNow({ ...frame(3), sig: "THEIRS" }, false)!).sig, "THEIRS");
  // Without a synchronous digest only frames already serialized are answered.
  const plain = new Signer(key, 8);
  assert.equal(plain.textNow(frame(4), true), undefined);
  const f5 = frame(5);
  await plain.text(f5, true);
  assert.ok(plain.textNow(f5, true)?.includes('"ts":5'));
});

Deno.test("review: a payload signed again and again stays in the signature cache (LRU, not FIFO)", async () => {
  let n = 0;
  const key = {
    sign: () => Promise.resolve(`sig${++n}`),
  } as unknown as import("../../lib/crypto/rsa.ts").PrivateKey;
  const s = new Signer(key, 2, sha256HexSync);
  const ack = { type: "ACK" as const, from: "S", to: "u", ts: 1, payload: { msg_ref: "USER_HELLO" } };
  await s.text({ ...ack }, true);
  for (let i = 0; i < 4; i++) {
    await s.sign({ dm: i }); // a one-off payload (a DM)
    assert.ok(s.textNow({ ...ack, ts: 2 + i }, true) !== undefined, `the ACK is ready at once (round ${i})`);
  }
  assert.equal(s.signatures, 5, "the ACK was signed once, each DM once");
});
