/** lib/core/pins.ts: one key per user id network-wide; a key that derives the id beats one that does not. */
import assert from "node:assert/strict";
import { judgeUserKey, pinnedUserKey, pinRemoteUser } from "../../lib/core/pins.ts";
import { Out } from "../../lib/core/out.ts";
import { initState } from "../../lib/core/reduce.ts";
import { deriveUserId } from "../../lib/protocol/user_id.ts";
import { ALICE, config, T0 } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const DERIVED = deriveUserId(K1)!; // the id K1 derives

Deno.test("first sight is new, the pinned key is the same, any other key conflicts", () => {
  const s = initState(config());
  assert.equal(judgeUserKey(s, ALICE, K1), "new");
  pinRemoteUser(new Out(s, T0), ALICE, K1);
  assert.equal(pinnedUserKey(s, ALICE), K1);
  assert.equal(judgeUserKey(s, ALICE, K1), "same");
  assert.equal(judgeUserKey(s, ALICE, K2), "conflict");
});

Deno.test("a key that derives the id replaces a pin that does not, never the reverse", () => {
  const s = initState(config());
  pinRemoteUser(new Out(s, T0), DERIVED, K2); // a squatter pinned first
  assert.equal(judgeUserKey(s, DERIVED, K1), "replaces");
  pinRemoteUser(new Out(s, T0), DERIVED, K1);
  assert.equal(judgeUserKey(s, DERIVED, K2), "conflict", "the squatter cannot take it back");
});

Deno.test("a user bound here is pinned by the users row: no second pin, nothing persisted", () => {
  const s = initState(config());
  s.users.set(ALICE, { userId: ALICE, pubkey: K1, encPubkey: K1, meta: null, version: 1 });
  const out = new Out(s, T0);
  pinRemoteUser(out, ALICE, K2);
  assert.equal(s.pins.has(ALICE), false);
  assert.deepEqual(out.effects, []);
  assert.equal(judgeUserKey(s, ALICE, K2), "conflict");
  const other = new Out(s, T0);
  pinRemoteUser(other, "b0b00000-0000-4000-8000-000000000002", K2);
  pinRemoteUser(other, "b0b00000-0000-4000-8000-000000000002", K2);
  assert.equal(other.effects.length, 1, "persisted once");
});
