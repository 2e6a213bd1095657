/** lib/core/offline.ts: store-and-forward counts and the effects that hand stored frames over (PROFILE §10). */
import assert from "node:assert/strict";
import {
  deliverQueued,
  enqueue,
  flushOutbox,
  outboxAcked,
  outboxHanded,
  setHome,
  toOutbox,
} from "../../lib/core/offline.ts";
import { Out } from "../../lib/core/out.ts";
import { initState } from "../../lib/core/reduce.ts";
import { DEFAULT_LIMITS, type Effect, type State } from "../../lib/core/types.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";
import { ALICE, config, T0 } from "../helpers/reducer.ts";

const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const deliver = { type: "USER_DELIVER", from: "s", to: ALICE, ts: 0, payload: {} } as unknown as Envelope<
  "USER_DELIVER"
>;
const sd = { type: "SERVER_DELIVER", from: "s", to: S2, ts: 0, payload: {} } as unknown as Envelope<
  "SERVER_DELIVER"
>;

function small(): State {
  return initState(config({ limits: { ...DEFAULT_LIMITS, maxQueuePerUser: 2 } }));
}

const kinds = (fx: Effect[]) => fx.map((e) => e.kind === "persist" ? `persist:${e.op.op}` : e.kind);

Deno.test("the offline queue counts frames, persists each, and refuses past maxQueuePerUser", () => {
  const s = small();
  const out = new Out(s, T0);
  assert.equal(enqueue(out, ALICE, deliver), null);
  assert.equal(enqueue(out, ALICE, deliver), null);
  assert.match(enqueue(out, ALICE, deliver) ?? "", /queue for .* is full \(2 frames\)/);
  assert.equal(s.queued.get(ALICE), 2);
  assert.equal(out.effects.filter((e) => e.kind === "persist" && e.op.op === "enqueue").length, 2);
});

Deno.test("a user back online gets one hand-over of the queue, skipping frames older than queueTtlMs", () => {
  const s = small();
  enqueue(new Out(s, T0), ALICE, deliver);
  const out = new Out(s, T0 + 1000);
  deliverQueued(out, 7, ALICE);
  assert.deepEqual(out.effects, [
    { kind: "deliverQueued", conn: 7, userId: ALICE, notBefore: T0 + 1000 - DEFAULT_LIMITS.queueTtlMs },
  ]);
  assert.equal(s.queued.has(ALICE), false);
  const again = new Out(s, T0 + 2000);
  deliverQueued(again, 7, ALICE);
  assert.deepEqual(again.effects, [], "nothing queued: no hand-over");
});

Deno.test("the outbox holds ten times a user's queue per server and counts down with each ACK", () => {
  const s = small();
  const out = new Out(s, T0);
  for (let i = 0; i < 20; i++) assert.equal(toOutbox(out, S2, sd), null);
  assert.match(toOutbox(out, S2, sd) ?? "", /outbox for server .* is full/);
  outboxAcked(out, S2, "ref-1");
  assert.equal(s.outbox.get(S2), 19);
  assert.deepEqual(out.effects.at(-1), { kind: "outboxAcked", serverId: S2, msgRef: "ref-1" });
});

Deno.test("a flush to a server that ACKs keeps the count; to one that does not, the count goes at once", () => {
  const s = small();
  toOutbox(new Out(s, T0), S2, sd);
  const acks = new Out(s, T0);
  flushOutbox(acks, 10, S2, "yes");
  assert.deepEqual(kinds(acks.effects), ["flushOutbox"]);
  assert.equal(s.outbox.get(S2), 1, "rows stay until ACKed");
  const noAck = new Out(s, T0);
  flushOutbox(noAck, 10, S2, "no");
  assert.equal(s.outbox.has(S2), false);
  const e = noAck.effects[0];
  assert.ok(e.kind === "flushOutbox" && e.confirm === false);
  const empty = new Out(s, T0);
  flushOutbox(empty, 10, S2, "no");
  assert.equal(empty.effects.length, 1, "a server that does not ACK: the store is looked at even when empty");
  const handed = new Out(s, T0);
  outboxHanded(handed, S2);
  assert.deepEqual(handed.effects, [], "nothing counted: nothing to forget");
});

Deno.test("setHome persists a change of home once", () => {
  const s = small();
  const out = new Out(s, T0);
  setHome(out, ALICE, S2);
  setHome(out, ALICE, S2);
  assert.deepEqual(kinds(out.effects), ["persist:setHome"]);
  assert.equal(s.homes.get(ALICE), S2);
});
