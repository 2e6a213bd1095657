/**
 * PROFILE §16 in the reducer, on fake time: pins, proof of possession, replays judged on what is signed, the
 * standing of server pins, JOIN limits, channel versions and display names. The end-to-end attacks against real
 * nodes are in tests/e2e/trust_test.ts.
 */
import assert from "node:assert/strict";
import { deriveUserId } from "../../lib/protocol/user_id.ts";
import { sanitizeMeta } from "../../lib/core/users.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { ALICE, closes, dials, errors, Harness, persists, sent, SERVER } from "../helpers/reducer.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const K3 = (await fixtureKey("user3")).publicKey;
const S2K = (await fixtureKey("user4")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const BOB = "b0b00000-0000-4000-8000-00000000b0b2";

/** A node with S2 linked on conn 10 (a signed LINK) and Alice local on conn 1. */
function linked(): Harness {
  return new Harness().linkedTo(S2, S2K, { link: true, user: { conn: 1, id: ALICE, key: K1 } });
}

function advert(user: string, key: string, ts: number) {
  return {
    type: "USER_ADVERTISE",
    from: S2,
    to: "*",
    ts,
    payload: { user_id: user, server_id: S2, meta: { pubkey: key }, pubkey: key },
  };
}

Deno.test("an advert presenting another key for a pinned user is refused, logged and not relayed", () => {
  const h = linked();
  h.connect(2);
  h.hello(2, BOB, K2);
  h.step({ kind: "closed", conn: 2, now: h.now }); // Bob bound here, offline
  const fx = h.signed(10, advert(BOB, K3, h.now + 1));
  assert.deepEqual(errors(fx), ["BAD_KEY"]);
  assert.equal(sent(fx, 1).length, 0, "Alice never sees the substituted key");
  assert.ok(fx.some((e) => e.kind === "log" && e.event === "user.key_conflict"));
  assert.equal(h.state.homes.get(BOB), SERVER, "Bob's home did not move");
  assert.equal(h.state.conns.get(10)!.strikes, 0, "not a strike: the link may carry honest traffic");
});

Deno.test("an advert pins a remote user's key; a later hello here with another key gets BAD_KEY", () => {
  const h = linked();
  const fx = h.signed(10, advert(BOB, K2, h.now));
  assert.ok(persists(fx).includes("pinUser"));
  assert.equal(sent(fx, 1)[0].type, "USER_ADVERTISE");
  h.signed(10, {
    type: "USER_REMOVE",
    from: S2,
    to: "*",
    ts: h.now + 1,
    payload: { user_id: BOB, server_id: S2 },
  });
  h.connect(3);
  assert.deepEqual(errors(h.hello(3, BOB, K3)), ["BAD_KEY"]);
  assert.ok(!h.state.localUsers.has(BOB));
});

Deno.test("a key that derives the id wins over a pin that does not, never the reverse", () => {
  const derived = deriveUserId(K3)!;
  const h = linked();
  // Mallory pinned the derived id first with her key K2 (an advert); the owner of K3 comes and takes it back.
  h.signed(10, advert(derived, K2, h.now));
  h.signed(10, {
    type: "USER_REMOVE",
    from: S2,
    to: "*",
    ts: h.now + 1,
    payload: { user_id: derived, server_id: S2 },
  });
  h.connect(3);
  const fx = h.hello(3, derived, K3);
  assert.deepEqual(errors(fx), []);
  assert.ok(fx.some((e) => e.kind === "log" && e.event === "user.key_conflict_resolved"));
  assert.equal(h.state.users.get(derived)?.pubkey, K3);
  h.step({ kind: "closed", conn: 3, now: h.now });
  // And the reverse is refused: the non-deriving key cannot come back.
  h.connect(4);
  assert.deepEqual(errors(h.hello(4, derived, K2)), ["BAD_KEY"]);
});

Deno.test("a hello for a pinned id needs a signature, a fresh payload ts and an unused nonce", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1, { nonce: "first-nonce" });
  h.step({ kind: "closed", conn: 1, now: h.now });
  h.connect(2);
  assert.deepEqual(errors(h.unsignedHello(2, ALICE, K1)), ["INVALID_SIG"]);
  assert.deepEqual(
    errors(h.hello(2, ALICE, K1, { nonce: "first-nonce", client: "other" })),
    ["INVALID_SIG"],
    "a replayed nonce",
  );
  assert.deepEqual(errors(h.hello(2, ALICE, K1, { ts: h.now - 11 * 60_000 })), ["INVALID_SIG"], "a stale ts");
  assert.deepEqual(errors(h.hello(2, ALICE, K1, { ts: undefined })), ["INVALID_SIG"], "no ts");
  assert.ok(!h.state.localUsers.has(ALICE));
  assert.deepEqual(errors(h.hello(2, ALICE, K1)), []);
  assert.equal(h.state.localUsers.get(ALICE), 2);
});

Deno.test("a nonce stays used across a restart (the seen key is persisted)", async () => {
  const h = new Harness();
  h.connect(1);
  const fx = h.hello(1, ALICE, K1, { nonce: "nonce-kept-on-disk" });
  const seen = fx.flatMap((e) => e.kind === "persist" && e.op.op === "seen" ? [[e.op.key, e.op.exp]] : []);
  assert.equal(seen.length, 1);
  const { initState } = await import("../../lib/core/state.ts");
  const restarted = new Harness();
  restarted.state = initState(h.state.config, {
    users: [...h.state.users.values()],
    seen: seen as [string, number][],
  });
  restarted.now = h.now + 1000;
  restarted.connect(2);
  assert.deepEqual(errors(restarted.hello(2, ALICE, K1, { nonce: "nonce-kept-on-disk" })), ["INVALID_SIG"]);
});

Deno.test("a newer signed session takes over: the older one is told and closed with 4001", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  const fx = h.hello(2, ALICE, K1);
  assert.deepEqual(errors(fx), ["NAME_IN_USE"]);
  assert.equal(sent(fx, 1)[0].type, "ERROR", "the ERROR goes to the older session");
  assert.deepEqual(closes(fx), [{ conn: 1, code: 4001 }]);
  assert.equal(h.state.localUsers.get(ALICE), 2);
  // The older session's close does not take the newer one offline.
  h.step({ kind: "closed", conn: 1, now: h.now });
  assert.equal(h.state.localUsers.get(ALICE), 2);
});

Deno.test("a relayed SERVER_DELIVER is judged on its signed orig_ts; an outbox resend on its signed fwd_ts", () => {
  const h = linked();
  const sd = (payload: Record<string, unknown>) => ({
    type: "SERVER_DELIVER",
    from: S2,
    to: SERVER,
    ts: h.now, // the envelope says "now": it proves nothing
    payload: { user_id: ALICE, ciphertext: "C", sender: BOB, sender_pub: K2, content_sig: "S", ...payload },
  });
  const old = h.now - 60 * 60_000;
  assert.deepEqual(errors(h.signed(10, sd({ orig_ts: old }))), ["TIMEOUT"]);
  const resent = h.signed(10, sd({ orig_ts: old, fwd_ts: h.now - 100, content_sig: "S2" }));
  assert.deepEqual(errors(resent), []);
  assert.equal(sent(resent, 1)[0].type, "USER_DELIVER");
  assert.equal(sent(resent, 1)[0].ts, old, "delivered with its original time");
  assert.deepEqual(
    sent(h.signed(10, sd({ orig_ts: old, fwd_ts: h.now + 5, content_sig: "S2" })), 1),
    [],
    "dup",
  );
});

Deno.test("an unsigned JOIN's pin is not dialed, not persisted, and goes with its link", () => {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  h.connect(10);
  const fx = h.frame(10, {
    type: "SERVER_HELLO_JOIN",
    from: S2,
    to: "x",
    ts: h.now,
    payload: { host: "198.51.100.7", port: 4444, pubkey: S2K },
  });
  assert.equal(sent(fx, 10)[0].type, "SERVER_WELCOME");
  assert.deepEqual(persists(fx), []);
  const down = h.step({ kind: "closed", conn: 10, now: h.now });
  assert.deepEqual(dials(down), [], "the address it named is not dialed");
  assert.ok(!h.state.servers.has(S2), "the pin went with the link");
});

Deno.test("JOINs are rate-limited per address", () => {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  const refused: number[] = [];
  for (let i = 0; i < 25; i++) {
    h.connect(100 + i, "203.0.113.9");
    const fx = h.frame(100 + i, {
      type: "SERVER_HELLO_JOIN",
      from: `5e3f0000-0000-4000-8000-0000000000${String(i).padStart(2, "0")}`,
      to: "x",
      ts: h.now,
      payload: { host: "203.0.113.9", port: 1000 + i, pubkey: S2K },
    });
    if (errors(fx).includes("UNKNOWN_TYPE")) refused.push(i);
  }
  assert.deepEqual(refused, [20, 21, 22, 23, 24]);
  h.now += 60_000; // 6 more a minute
  h.connect(200, "203.0.113.9");
  assert.equal(
    sent(
      h.frame(200, {
        type: "SERVER_HELLO_JOIN",
        from: "5e3f0000-0000-4000-8000-000000000099",
        to: "x",
        ts: h.now,
        payload: { host: "203.0.113.9", port: 2000, pubkey: S2K },
      }),
      200,
    )[0].type,
    "SERVER_WELCOME",
  );
});

Deno.test("channel versions grow by a bounded step; an unreadable membership frame is not a strike", () => {
  const h = linked();
  h.state.channel = { version: 5, creatorPub: K3, members: new Set() };
  h.signed(10, {
    type: "PUBLIC_CHANNEL_UPDATED",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { version: Number.MAX_SAFE_INTEGER, wraps: [] },
  });
  assert.equal(h.state.channel.version, 5);
  h.signed(10, {
    type: "PUBLIC_CHANNEL_UPDATED",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { version: 9, wraps: [] },
  });
  assert.equal(h.state.channel.version, 9);
  const text = `{"type":"PUBLIC_CHANNEL_ADD","from":"${S2}","to":"*","ts":${h.now},` +
    `"payload":{"add":["${ALICE}"],"if_version":1152921504606846976},"sig":"SIG"}`;
  const bad = h.frame(10, text, "valid", S2K);
  assert.deepEqual(errors(bad), []);
  assert.equal(h.state.conns.get(10)!.strikes, 0);
});

Deno.test("display names lose controls, bidi overrides, zero-width characters and line separators", () => {
  const meta = sanitizeMeta({ display_name: "al\u202eice\u200b\u0085\u2028\u001b[2J!" });
  assert.equal(meta?.display_name, "alice[2J!");
});
