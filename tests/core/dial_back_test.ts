/** Reducer tests for PROFILE §15 dial-back links (issue 17): who may open one, and no ERROR storm from a sync. */
import assert from "node:assert/strict";
import { fixtureKey } from "../helpers/keys.ts";
import { ALICE, BOB, CAROL, closes, dials, errors, Harness, joining, sent } from "../helpers/reducer.ts";

const [introKey, otherKey, aliceKey, bobKey, carolKey] = await Promise.all(
  ["user5", "user4", "user1", "user2", "user3"].map(fixtureKey),
);
const INTRO = "db-intro";

/** A node that joined INTRO (bootstrap key pinned by the welcome), whose join socket INTRO then closed. */
function welcomedThenClosed(): Harness {
  const h = new Harness(joining([{ host: "127.0.0.1", port: 9000, pubkey: introKey.publicKey }]));
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  h.step({ kind: "connected", conn: 5, addr: "127.0.0.1", now: h.now, dial: d.token });
  h.signed(5, {
    type: "SERVER_WELCOME",
    from: INTRO,
    to: "*",
    ts: h.now,
    payload: { assigned_id: null, server_id: INTRO, server_pub: introKey.publicKey },
  });
  assert.equal(h.state.links.get(INTRO), 5);
  h.step({ kind: "closed", conn: 5, now: h.now });
  return h;
}

function sync(users: unknown[], from = INTRO) {
  return { type: "SERVER_PRESENCE_SYNC", from, to: "*", ts: Date.now(), payload: { server_id: from, users } };
}

Deno.test("a PRESENCE_SYNC from the welcome-pinned introducer becomes the link; users become presence", () => {
  const h = welcomedThenClosed();
  h.now = Date.now();
  h.connect(20);
  const user = {
    user_id: CAROL,
    server_id: INTRO,
    meta: { display_name: "carol" },
    pubkey: carolKey.publicKey,
  };
  const fx = h.signed(20, sync([user, { user_id: BOB, server_id: "elsewhere" }, "junk"]));
  assert.deepEqual(errors(fx), []);
  assert.equal(h.state.links.get(INTRO), 20);
  assert.equal(h.state.presence.get(CAROL)?.serverId, INTRO);
  assert.equal(h.state.presence.has(BOB), false, "an entry for another server is skipped");
  assert.equal(h.state.helloKind.get(INTRO), "announce", "our redials open with SERVER_ANNOUNCE");
});

Deno.test("a PRESENCE_SYNC from a server no welcome pinned, or unsigned, opens no link: one ERROR, close", () => {
  const h = welcomedThenClosed();
  h.now = Date.now();
  h.state.servers.set("s2", { serverId: "s2", host: "127.0.0.1", port: 9100, pubkey: otherKey.publicKey });
  h.connect(21);
  const a = h.signed(21, sync([], "s2"));
  assert.equal(errors(a).length, 1);
  assert.deepEqual(closes(a).map((c) => c.conn), [21]);
  h.connect(22);
  const b = h.frame(22, sync([]), "absent");
  assert.equal(errors(b).length, 1);
  assert.deepEqual(closes(b).map((c) => c.conn), [22]);
  assert.equal(h.state.links.has(INTRO), false);
  assert.equal(h.state.links.has("s2"), false);
});

Deno.test("a PRESENCE_SYNC whose entries conflict with pinned user keys draws one ERROR, not one per entry", () => {
  const h = welcomedThenClosed();
  h.now = Date.now();
  // Alice and Bob are bound here (pinned), then leave.
  for (const [conn, id, key] of [[30, ALICE, aliceKey], [31, BOB, bobKey]] as const) {
    h.connect(conn);
    h.hello(conn, id, key.publicKey);
    h.step({ kind: "closed", conn, now: h.now });
  }
  h.connect(20);
  const claim = (id: string) => ({ user_id: id, server_id: INTRO, pubkey: carolKey.publicKey });
  const fx = h.signed(20, sync([claim(ALICE), claim(BOB), claim(ALICE)]));
  assert.equal(h.state.links.get(INTRO), 20);
  assert.deepEqual(errors(fx), ["BAD_KEY"], "one ERROR for the whole sync");
  assert.equal(h.state.presence.has(ALICE), false);
  assert.equal(sent(fx, 20).filter((f) => f.type === "ERROR").length, errors(fx).length);
});
