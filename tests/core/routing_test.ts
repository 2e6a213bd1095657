/** lib/core/routing.ts: where a DM goes (local, over a link, the queue, the outbox), through the reducer. */
import assert from "node:assert/strict";
import { routeUser } from "../../lib/core/routing.ts";
import { ALICE, BOB, CAROL, errors, Harness, persists, sent } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";

function dm(to: string, n: number, ts: number) {
  return {
    type: "MSG_DIRECT",
    from: ALICE,
    to,
    ts,
    payload: { ciphertext: `CT${n}`, sender_pub: "PUB", content_sig: "CS" },
  };
}

Deno.test("routeUser: a local user's connection, else the link to their server, never back where it came from", () => {
  const h = new Harness();
  h.state.localUsers.set(ALICE, 1);
  h.state.presence.set(BOB, { userId: BOB, serverId: S2, advert: {} as never });
  h.state.links.set(S2, 10);
  assert.deepEqual(routeUser(h.state, ALICE), { kind: "local", conn: 1 });
  assert.deepEqual(routeUser(h.state, BOB), { kind: "server", conn: 10, serverId: S2 });
  assert.equal(routeUser(h.state, BOB, S2), null, "not back to the server it came from");
  h.state.links.delete(S2);
  assert.equal(routeUser(h.state, BOB), null, "no link: no route");
  assert.equal(routeUser(h.state, CAROL), null);
});

Deno.test("a DM to an online local user is delivered; to a user bound here but offline it is queued and ACKed", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  assert.deepEqual(sent(h.frame(1, dm(BOB, 1, h.now)), 2).map((f) => f.type), ["USER_DELIVER"]);
  h.step({ kind: "closed", conn: 2, now: h.now });
  const fx = h.frame(1, dm(BOB, 2, h.now));
  assert.deepEqual(persists(fx), ["enqueue"]);
  assert.deepEqual(sent(fx, 1).map((f) => f.type), ["ACK"], "accepted once persisted");
});

Deno.test("a DM to a user nobody knows is USER_NOT_FOUND; to a user homed on an unlinked server it waits in the outbox", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  assert.deepEqual(errors(h.frame(1, dm(CAROL, 1, h.now))), ["USER_NOT_FOUND"]);
  h.state.homes.set(CAROL, S2);
  const fx = h.frame(1, dm(CAROL, 2, h.now));
  assert.deepEqual(persists(fx), ["outbox"]);
  assert.equal(h.state.outbox.get(S2), 1);
  const op = fx.find((e) => e.kind === "persist");
  assert.ok(op?.kind === "persist" && op.op.op === "outbox", "kept in the outbox");
  assert.equal((op.op.frame.payload as { ack?: boolean }).ack, true, "asks its server for an ACK");
});
