/** lib/core/users.ts: USER_HELLO admission and the user's meta (PROFILE §6, §16). */
import assert from "node:assert/strict";
import { displayName, sanitizeMeta } from "../../lib/core/users.ts";
import { ALICE, closes, errors, Harness, sent } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;

Deno.test("meta keeps only the standard's keys, strings stripped of unsafe characters and bounded", () => {
  assert.deepEqual(
    sanitizeMeta({
      display_name: "A\u202eB\u0000C",
      pronouns: "x".repeat(200),
      age: 3,
      evil: "no",
      extras: { a: 1 },
    }),
    { display_name: "ABC", pronouns: "x".repeat(128), age: 3, extras: { a: 1 } },
  );
  assert.equal(sanitizeMeta({ evil: 1 }), null);
  assert.equal(sanitizeMeta({ age: Infinity }), null);
  assert.equal(displayName({ userId: ALICE, pubkey: "", encPubkey: "", meta: null, version: 1 }), ALICE);
  assert.equal(
    displayName({ userId: ALICE, pubkey: "", encPubkey: "", meta: { display_name: "A" }, version: 1 }),
    "A",
  );
});

Deno.test("a hello's nonce is used up: the same signed hello again is refused as a replay (PROFILE §16)", () => {
  const h = new Harness();
  h.connect(1);
  assert.equal(sent(h.hello(1, ALICE, K1, { nonce: "nonce-fixed-1" }), 1)[0].type, "ACK");
  h.step({ kind: "closed", conn: 1, now: h.now });
  h.now += 1000;
  h.connect(2);
  const fx = h.hello(2, ALICE, K1, { nonce: "nonce-fixed-1" });
  assert.equal(errors(fx).length, 1);
  assert.match(JSON.stringify(sent(fx, 2)[0].payload), /nonce was used before/);
  assert.equal(h.state.localUsers.has(ALICE), false);
  assert.deepEqual(closes(fx), []);
});

Deno.test("a hello's meta is sanitized before it is kept and advertised", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1, { meta: { display_name: "Mal\u200bory", evil: true } });
  assert.deepEqual(h.state.users.get(ALICE)?.meta, { display_name: "Malory" });
});
