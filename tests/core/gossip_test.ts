/** lib/core/gossip.ts: presence between servers (PROFILE §3, §6, §15), through the reducer on a link. */
import assert from "node:assert/strict";
import { restoresPresence, userLocations } from "../../lib/core/gossip.ts";
import { Out } from "../../lib/core/out.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";
import { ALICE, BOB, errors, Harness, sent, SERVER } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const S2K = (await fixtureKey("user4")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const S3 = "5e3f0000-0000-4000-8000-00000000c0de";

/** S2 linked on conn 10, Alice local on conn 1. */
function linked(): Harness {
  return new Harness().linkedTo(S2, S2K, { user: { conn: 1, id: ALICE, key: K1 } });
}

const advert = (user: string, server: string, ts: number) => ({
  type: "USER_ADVERTISE",
  from: server,
  to: "*",
  ts,
  payload: { user_id: user, server_id: server, meta: {}, pubkey: K2 },
});
const remove = (user: string, server: string, ts: number) => ({
  type: "USER_REMOVE",
  from: server,
  to: "*",
  ts,
  payload: { user_id: user, server_id: server },
});

Deno.test("an advert from a linked server puts the user online there and reaches our users", () => {
  const h = linked();
  const fx = h.signed(10, advert(BOB, S2, h.now));
  assert.equal(h.state.presence.get(BOB)?.serverId, S2);
  assert.equal(h.state.homes.get(BOB), S2);
  assert.deepEqual(sent(fx, 1).map((f) => f.type), ["USER_ADVERTISE"]);
});

Deno.test("an advert older than the removal that followed it does not bring the user back", () => {
  const h = linked();
  h.signed(10, advert(BOB, S2, h.now));
  h.now += 10;
  h.signed(10, remove(BOB, S2, h.now));
  assert.equal(h.state.presence.has(BOB), false);
  h.now += 10;
  const late = h.signed(10, advert(BOB, S2, h.now - 15)); // made before the removal, arriving after it
  assert.equal(h.state.presence.has(BOB), false, "stale advert ignored");
  assert.deepEqual(sent(late, 1), []);
});

Deno.test("a server speaks only for its own users; adverts for servers we are not linked to are ignored", () => {
  const h = linked();
  const lie = { ...advert(BOB, S2, h.now), payload: { ...advert(BOB, S3, h.now).payload } };
  assert.deepEqual(errors(h.signed(10, lie)), ["INVALID_SIG"]);
  assert.equal(h.state.conns.get(10)?.strikes, 1, "a strike");
  h.state.servers.set(S3, { serverId: S3, host: "h", port: 1, pubkey: "K3" });
  h.signed(10, advert(BOB, S3, h.now));
  assert.equal(h.state.presence.has(BOB), false, "S3 has no link to us: its users cannot be reached");
});

Deno.test("user locations keep only the entries placing a user at the server that sent them", () => {
  const h = linked();
  const out = new Out(h.state, h.now);
  userLocations(out, S2, { [BOB]: S2, [SERVER]: S3, [ALICE]: S2, "not-an-id": S2 });
  assert.equal(h.state.homes.get(BOB), S2);
  assert.equal(h.state.homes.has(SERVER), false, "S2 does not speak for S3's users");
  assert.notEqual(h.state.homes.get(ALICE), S2, "Alice is online here");
  userLocations(out, S2, ["not", "a", "map"]);
});

Deno.test("restoresPresence: a copy of an advert counts again only when the user is not online at its server", () => {
  const h = linked();
  const env = advert(BOB, S2, h.now) as unknown as Envelope<"USER_ADVERTISE">;
  assert.equal(restoresPresence(h.state, env), true);
  h.signed(10, advert(BOB, S2, h.now));
  assert.equal(restoresPresence(h.state, env), false);
});
