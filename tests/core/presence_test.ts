/** lib/core/presence.ts: adverts of our users, their relay, and a user leaving (PROFILE §6). */
import assert from "node:assert/strict";
import { Out } from "../../lib/core/out.ts";
import { advertFor, sendSnapshot, toLocalUsers, toServers, userLeft } from "../../lib/core/presence.ts";
import { initState } from "../../lib/core/reduce.ts";
import type { Effect, UserRecord } from "../../lib/core/types.ts";
import { ALICE, BOB, CAROL, config, SERVER, T0 } from "../helpers/reducer.ts";

const alice: UserRecord = {
  userId: ALICE,
  pubkey: "K-A",
  encPubkey: "K-A",
  meta: { display_name: "A" },
  version: 1,
};
const to = (fx: Effect[]) => fx.flatMap((e) => e.kind === "send" ? [`${e.conn}:${e.frame.type}`] : []);

function online() {
  const s = initState(config());
  s.localUsers.set(ALICE, 1).set(BOB, 2);
  s.links.set("S2", 10);
  const out = new Out(s, T0);
  s.presence.set(ALICE, { userId: ALICE, serverId: SERVER, advert: advertFor(out, alice) });
  return s;
}

Deno.test("our advert names us as the home server and carries the key in payload and meta (PROFILE §6)", () => {
  const a = advertFor(new Out(initState(config()), T0), alice);
  assert.deepEqual(a.payload, {
    user_id: ALICE,
    server_id: SERVER,
    meta: { display_name: "A", pubkey: "K-A" },
    pubkey: "K-A",
  });
  assert.equal(a.ts, T0);
});

Deno.test("relays go to every local user but the one excepted, and to every link", () => {
  const s = online();
  const out = new Out(s, T0);
  const f = out.frame("USER_REMOVE", "*", { user_id: CAROL, server_id: SERVER });
  toLocalUsers(out, f, true, ALICE);
  toServers(out, f, true);
  assert.deepEqual(to(out.effects), ["2:USER_REMOVE", "10:USER_REMOVE"]);
});

Deno.test("a newcomer's snapshot: every online user's advert but its own, ours to be signed", () => {
  const s = online();
  const out = new Out(s, T0);
  sendSnapshot(out, 2, BOB);
  assert.deepEqual(to(out.effects), ["2:USER_ADVERTISE"]);
  const e = out.effects[0];
  assert.ok(e.kind === "send" && e.sign, "our own users' adverts are signed by the shell");
  const none = new Out(s, T0);
  sendSnapshot(none, 1, ALICE);
  assert.deepEqual(none.effects, []);
});

Deno.test("a user leaving: gone from presence, removal told to local users and links, time recorded", () => {
  const s = online();
  const out = new Out(s, T0 + 5);
  userLeft(out, ALICE);
  assert.equal(s.localUsers.has(ALICE), false);
  assert.equal(s.presence.has(ALICE), false);
  assert.equal(s.presenceTs.get(ALICE), T0 + 5);
  assert.deepEqual(to(out.effects), ["2:USER_REMOVE", "10:USER_REMOVE"]);
  const again = new Out(s, T0 + 6);
  userLeft(again, ALICE);
  assert.deepEqual(to(again.effects), [], "told once");
});
