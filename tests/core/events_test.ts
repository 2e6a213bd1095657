/** lib/core/events.ts: connections opening and closing, oversize frames, DMs a socket never took. */
import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../lib/core/types.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";
import { ALICE, BOB, closes, config, Harness, persists, sent } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;

Deno.test("connections per address: past the limit the next is closed; a closed one frees its place", () => {
  const h = new Harness(config({ limits: { ...DEFAULT_LIMITS, maxConnsPerAddr: 2 } }));
  assert.deepEqual(closes(h.connect(1, "10.0.0.1")), []);
  assert.deepEqual(closes(h.connect(2, "10.0.0.1")), []);
  assert.deepEqual(closes(h.connect(3, "10.0.0.1")), [{ conn: 3, code: 1008 }]);
  assert.deepEqual(closes(h.connect(4, "10.0.0.2")), [], "another address");
  h.step({ kind: "closed", conn: 3, now: h.now });
  h.step({ kind: "closed", conn: 1, now: h.now });
  assert.deepEqual(closes(h.connect(5, "10.0.0.1")), []);
  assert.equal(h.state.connsPerAddr.get("10.0.0.1"), 2);
});

Deno.test("an oversize frame closes its connection with 1009, naming the limit", () => {
  const h = new Harness();
  h.connect(1);
  const fx = h.step({ kind: "oversize", conn: 1, bytes: 300_000, now: h.now });
  assert.deepEqual(closes(fx), [{ conn: 1, code: 1009 }]);
  const c = fx.find((e) => e.kind === "close");
  assert.ok(c?.kind === "close" && c.reason.includes(String(DEFAULT_LIMITS.maxFrameBytes)));
});

Deno.test("a connection we never asked for (an unknown dial token) is closed", () => {
  const h = new Harness();
  assert.deepEqual(closes(h.step({ kind: "connected", conn: 9, addr: "x", now: h.now, dial: 42 })), [
    { conn: 9, code: 1000 },
  ]);
});

Deno.test("a DM a closed socket never took goes to the user's new connection, or to the queue", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  const frame = { type: "USER_DELIVER", from: "s", to: BOB, ts: h.now, payload: {} } as unknown as Envelope;
  h.step({ kind: "closed", conn: 2, now: h.now });
  const queued = h.step({ kind: "undelivered", conn: 2, userId: BOB, frame, now: h.now });
  assert.deepEqual(persists(queued), ["enqueue"]);
  assert.equal(h.state.queued.get(BOB), 1);
  h.connect(3);
  h.now += 1;
  h.hello(3, BOB, K2);
  const live = h.step({ kind: "undelivered", conn: 2, userId: BOB, frame, now: h.now });
  assert.deepEqual(sent(live, 3).map((f) => f.type), ["USER_DELIVER"], "Bob is back: straight to him");
  assert.deepEqual(h.step({ kind: "undelivered", conn: 2, userId: "nobody", frame, now: h.now }), []);
});
