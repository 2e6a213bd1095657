/**
 * What the server tells a client beyond the standard's fields, for the client core's policy (docs/PROTOCOL.md):
 * its limits in the hello ACK, and `file_id` / `msg_ref` on the ERRORs that refuse a file or a message. Driven
 * through the reducer (lib/core), as a node runs it.
 */
import assert from "node:assert/strict";
import { config, Harness, sent } from "../helpers/reducer.ts";
import { ALICE, BOB } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { msgRef } from "../../lib/protocol/msg_ref.ts";
import { canonicalPayloadBytes } from "../../lib/protocol/preimages.ts";
import { sha256 } from "../../lib/protocol/sha256.ts";
import { DEFAULT_LIMITS } from "../../lib/core/config.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const UNKNOWN = "0dd00000-0000-4000-8000-000000000009";

// deno-lint-ignore no-explicit-any
type P = any;

function node(limits = {}): Harness {
  const h = new Harness(config({ limits: { ...DEFAULT_LIMITS, ...limits } }));
  h.state.channel = { version: 1, creatorPub: K2, members: new Set() };
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  return h;
}

let n = 0;
const dm = (from: string, to: string, ts: number) => ({
  type: "MSG_DIRECT",
  from,
  to,
  ts,
  payload: { ciphertext: `AAAA${++n}`, sender_pub: K1, content_sig: "c2ln" }, // each its own (the seen cache)
});

Deno.test("the hello ACK announces the limits the user's connection is held to", () => {
  const h = node({ ratePerSec: 20, rateBurst: 6, maxFileBytes: 1234 });
  h.connect(1);
  const ack = sent(h.hello(1, ALICE, K1), 1).find((f) => f.type === "ACK")!;
  assert.deepEqual((ack.payload as P).limits, {
    rate_per_sec: 20,
    rate_burst: 6,
    max_frame_bytes: DEFAULT_LIMITS.maxFrameBytes,
    max_file_bytes: 1234,
  });
});

Deno.test("an ERROR refusing a DM carries its msg_ref; one refusing a file carries its file_id", () => {
  const h = node();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  const f = dm(ALICE, UNKNOWN, h.now);
  const err = sent(h.signed(1, f), 1).find((e) => e.type === "ERROR")!;
  assert.equal((err.payload as P).code, "USER_NOT_FOUND");
  assert.equal((err.payload as P).msg_ref, msgRef(sha256(canonicalPayloadBytes(f.payload))));
  const stale = dm(ALICE, BOB, h.now - 3600_000);
  const old = sent(h.signed(1, stale), 1).find((e) => e.type === "ERROR")!;
  assert.equal((old.payload as P).code, "TIMEOUT");
  assert.equal((old.payload as P).msg_ref, msgRef(sha256(canonicalPayloadBytes(stale.payload))));
  const big = {
    type: "FILE_START",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: "f-big", name: "x", size: 17 * 1024 * 1024, sha256: "00".repeat(32), mode: "dm" },
  };
  const refused = sent(h.frame(1, big), 1).find((e) => e.type === "ERROR")!;
  assert.equal((refused.payload as P).file_id, "f-big");
  const chunk = {
    type: "FILE_CHUNK",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: "nope", index: 0, ciphertext: "AA" },
  };
  assert.equal((sent(h.frame(1, chunk), 1).find((e) => e.type === "ERROR")!.payload as P).file_id, "nope");
  const lost = {
    type: "FILE_START",
    from: ALICE,
    to: UNKNOWN,
    ts: h.now,
    payload: { file_id: "f-lost", name: "x", size: 10, sha256: "00".repeat(32), mode: "dm" },
  };
  assert.equal((sent(h.frame(1, lost), 1).find((e) => e.type === "ERROR")!.payload as P).file_id, "f-lost");
});
