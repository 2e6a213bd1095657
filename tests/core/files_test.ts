/** lib/core/files.ts: file transfers through the server (PROFILE §9), through the reducer. */
import assert from "node:assert/strict";
import { ALICE, BOB, errors, Harness, sent } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;

function pair(): Harness {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  return h;
}

function start(h: Harness, id: string, size: number, name = "a.bin") {
  return h.frame(1, {
    type: "FILE_START",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: id, name, size, sha256: "0".repeat(64), mode: "dm" },
  });
}

function chunk(h: Harness, id: string, bytes: number, index = 0) {
  return h.frame(1, {
    type: "FILE_CHUNK",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: id, index, ciphertext: "A".repeat(Math.ceil((bytes * 4) / 3)) },
  });
}

Deno.test("a transfer may carry at most about twice its announced size in ciphertext", () => {
  const h = pair();
  start(h, "f1", 10);
  assert.deepEqual(sent(chunk(h, "f1", 1000), 2).map((f) => f.type), ["FILE_CHUNK"]);
  const fx = chunk(h, "f1", 70 * 1024, 1); // past 2.1 × 10 bytes + 64 KiB
  assert.deepEqual(errors(fx), ["UNKNOWN_TYPE", "UNKNOWN_TYPE"], "sender and recipient told");
  assert.match(JSON.stringify(sent(fx, 1)[0].payload), /more data than its announced 10 bytes/);
  assert.equal(h.state.transfers.size, 0, "dropped");
});

Deno.test("one sender has at most 16 transfers open; a file_id in use or unknown is refused", () => {
  const h = pair();
  for (let i = 0; i < 16; i++) assert.deepEqual(errors(start(h, `f${i}`, 1)), []);
  assert.match(JSON.stringify(sent(start(h, "f16", 1), 1)[0].payload), /too many files at once/);
  // Another payload (a copy of the same one would be a replay, dropped silently: PROFILE §16).
  assert.match(
    JSON.stringify(sent(start(h, "f0", 1, "b.bin"), 1)[0].payload),
    /file_id f0 is already in use/,
  );
  assert.match(JSON.stringify(sent(chunk(h, "nope", 1), 1)[0].payload), /unknown file_id nope/);
});

Deno.test("FILE_END closes the transfer and ACKs the sender; over the size limit is refused at FILE_START", () => {
  const h = pair();
  start(h, "f1", 10);
  const end = h.frame(1, { type: "FILE_END", from: ALICE, to: BOB, ts: h.now, payload: { file_id: "f1" } });
  assert.deepEqual(sent(end, 2).map((f) => f.type), ["FILE_END"]);
  assert.deepEqual(sent(end, 1).map((f) => f.type), ["ACK"]);
  assert.equal(h.state.transfers.size, 0);
  const big = start(h, "f2", h.state.config.limits.maxFileBytes + 1);
  assert.match(JSON.stringify(sent(big, 1)[0].payload), /the limit is 16 MiB/);
  assert.deepEqual(sent(big, 2), [], "the recipient never saw it");
});
