import assert from "node:assert/strict";
import { fixtureKey } from "../helpers/keys.ts";
import { ALICE, BOB, CAROL, closes, config, errors, Harness, sent, SERVER } from "../helpers/reducer.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const K3 = (await fixtureKey("user3")).publicKey;
const K2048 = (await fixtureKey("rsa2048")).publicKey;
const K1024 = (await fixtureKey("rsa1024")).publicKey;

function dm(from: string, to: string, ts: number, extra: Record<string, unknown> = {}) {
  return {
    type: "MSG_DIRECT",
    from,
    to,
    ts,
    payload: { ciphertext: "CT", sender_pub: "PUB", content_sig: "CS" },
    sig: "",
    ...extra,
  };
}

/** A DM whose payload is unique by `n` (PROFILE §16: a repeated payload is a replay, whatever its ts). */
function udm(from: string, to: string, ts: number, n: number) {
  return dm(from, to, ts, { payload: { ciphertext: `CT${n}`, sender_pub: "PUB", content_sig: "CS" } });
}

function twoUsers(): Harness {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1, { meta: { display_name: "Alice" } });
  h.connect(2);
  h.hello(2, BOB, K2);
  return h;
}

Deno.test("USER_HELLO accepted: signed ACK, snapshot of others, own advert to everyone, user persisted", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  const fx = h.hello(2, BOB, K2, { meta: { display_name: "Bob" } });
  const toBob = sent(fx, 2);
  assert.deepEqual(toBob.map((f) => f.type), ["ACK", "USER_ADVERTISE", "USER_ADVERTISE"]);
  const ack = toBob[0];
  assert.deepEqual(ack.payload, {
    msg_ref: "USER_HELLO",
    server_id: SERVER,
    server_pub: "SERVER-PUB",
    limits: { rate_per_sec: 100, rate_burst: 400, max_frame_bytes: 262144, max_file_bytes: 16777216 },
  });
  assert.equal((toBob[1].payload as { user_id: string }).user_id, ALICE); // snapshot first
  const own = toBob[2];
  assert.deepEqual(own.payload, {
    user_id: BOB,
    server_id: SERVER,
    meta: { display_name: "Bob", pubkey: K2 },
    pubkey: K2,
  });
  assert.deepEqual(sent(fx, 1).map((f) => f.type), ["USER_ADVERTISE"]);
  assert.ok(fx.every((e) => e.kind !== "send" || e.sign));
  const persist = fx.find((e): e is Extract<typeof e, { kind: "persist" }> =>
    e.kind === "persist" && e.op.op === "upsertUser"
  );
  assert.ok(
    persist && persist.op.op === "upsertUser" && persist.op.user.userId === BOB &&
      persist.op.user.pubkey === K2,
  );
  assert.ok(fx.indexOf(persist) < fx.findIndex((e) => e.kind === "send"), "persisted before the ACK");
});

Deno.test("USER_HELLO for an id already online gets NAME_IN_USE", () => {
  const h = twoUsers();
  h.connect(3);
  assert.deepEqual(errors(h.hello(3, ALICE, K1)), ["NAME_IN_USE"]);
});

Deno.test("USER_HELLO with a 2048-bit key, or a non-UUID id, gets BAD_KEY", () => {
  const h = new Harness();
  h.connect(1);
  const fx = h.hello(1, ALICE, K2048);
  assert.deepEqual(errors(fx), ["BAD_KEY"]);
  assert.match((sent(fx)[0].payload as { detail: string }).detail, /2048-bit/);
  assert.deepEqual(errors(h.hello(1, "alice", K1)), ["BAD_KEY"]);
  assert.equal(h.state.localUsers.size, 0);
});

Deno.test("a bound user id presenting another key gets BAD_KEY; the same key in another encoding is fine", async () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.step({ kind: "closed", conn: 1, now: h.now });
  h.connect(2);
  assert.deepEqual(errors(h.hello(2, ALICE, K3)), ["BAD_KEY"]);
  const { spkiToPem, decodePublicKey } = await import("../../lib/protocol/keys.ts");
  const d = decodePublicKey(K1);
  assert.ok(d.ok);
  assert.deepEqual(errors(h.hello(2, ALICE, spkiToPem(d.key.spki))), []);
  assert.equal(h.state.localUsers.get(ALICE), 2);
});

Deno.test("MSG_DIRECT to a local user becomes USER_DELIVER with the original ts and sender", () => {
  const h = twoUsers();
  h.now += 5000;
  const ts = h.now - 1234;
  const fx = h.frame(1, dm(ALICE, BOB, ts));
  const [d] = sent(fx, 2);
  assert.equal(d.type, "USER_DELIVER");
  assert.equal(d.from, SERVER);
  assert.equal(d.to, BOB);
  assert.equal(d.ts, ts);
  assert.deepEqual(d.payload, { ciphertext: "CT", sender: ALICE, sender_pub: "PUB", content_sig: "CS" });
  assert.equal(sent(fx, 1).length, 0, "no ACK for a live delivery");
});

Deno.test("MSG_PRIVATE is delivered like MSG_DIRECT", () => {
  const h = twoUsers();
  assert.equal(sent(h.frame(1, dm(ALICE, BOB, h.now, { type: "MSG_PRIVATE" })), 2)[0].type, "USER_DELIVER");
});

Deno.test("MSG_DIRECT to an unknown user gets USER_NOT_FOUND and no strike", () => {
  const h = twoUsers();
  const fx = h.frame(1, dm(ALICE, CAROL, h.now));
  assert.deepEqual(errors(fx), ["USER_NOT_FOUND"]);
  assert.equal(h.state.conns.get(1)!.strikes, 0);
});

Deno.test("a replayed frame is dropped silently; the lab replay mode lets it through", () => {
  const h = twoUsers();
  const frame = dm(ALICE, BOB, h.now);
  assert.equal(sent(h.frame(1, frame), 2).length, 1);
  const again = h.frame(1, frame);
  assert.equal(sent(again).length, 0);
  assert.equal(h.state.conns.get(1)!.strikes, 0);

  const lab = new Harness(config({ labReplay: true }));
  lab.connect(1);
  lab.hello(1, ALICE, K1);
  lab.connect(2);
  lab.hello(2, BOB, K2);
  lab.frame(1, frame);
  assert.equal(sent(lab.frame(1, frame), 2).length, 1);
});

Deno.test("a spoofed `from` is refused with INVALID_SIG and counts a strike", () => {
  const h = twoUsers();
  const fx = h.frame(1, dm(BOB, BOB, h.now));
  assert.deepEqual(errors(fx), ["INVALID_SIG"]);
  assert.equal(sent(fx, 2).length, 0);
  assert.equal(h.state.conns.get(1)!.strikes, 1);
});

Deno.test("a user frame whose sig fails, or verified with another key, is refused with INVALID_SIG", () => {
  const h = twoUsers();
  assert.deepEqual(errors(h.frame(1, dm(ALICE, BOB, h.now), "invalid")), ["INVALID_SIG"]);
  assert.deepEqual(errors(h.frame(1, dm(ALICE, BOB, h.now + 1), "valid", K3)), ["INVALID_SIG"]);
  assert.deepEqual(errors(h.frame(1, dm(ALICE, BOB, h.now + 2), "valid", K1)), []);
});

Deno.test("a stale frame (ts outside the freshness window) is refused", () => {
  const h = twoUsers();
  const fx = h.frame(1, dm(ALICE, BOB, h.now - 11 * 60_000));
  assert.deepEqual(errors(fx), ["TIMEOUT"]);
  assert.equal(sent(fx, 2).length, 0);
});

Deno.test("unknown types and malformed JSON get UNKNOWN_TYPE with a detail", () => {
  const h = twoUsers();
  const a = h.frame(1, { type: "BOGUS", from: ALICE, to: BOB, ts: h.now, payload: {} });
  assert.deepEqual(errors(a), ["UNKNOWN_TYPE"]);
  const b = h.frame(1, "{oops");
  assert.deepEqual(errors(b), ["UNKNOWN_TYPE"]);
  assert.match((sent(b)[0].payload as { detail: string }).detail, /malformed JSON/);
});

Deno.test("the first frame must be USER_HELLO", () => {
  const h = new Harness();
  h.connect(1);
  const fx = h.frame(1, dm(ALICE, BOB, h.now));
  assert.deepEqual(errors(fx), ["UNKNOWN_TYPE"]);
  assert.match((sent(fx)[0].payload as { detail: string }).detail, /first frame must be USER_HELLO/);
});

Deno.test("10 strikes close the connection with 1008", () => {
  const h = twoUsers();
  let fx = [] as ReturnType<Harness["frame"]>;
  for (let i = 0; i < 10; i++) fx = h.frame(1, "not json");
  assert.deepEqual(closes(fx), [{ conn: 1, code: 1008 }]);
});

Deno.test("an oversize frame closes the connection with 1009", () => {
  const h = twoUsers();
  assert.deepEqual(closes(h.step({ kind: "oversize", conn: 1, now: h.now, bytes: 300_000 })), [{
    conn: 1,
    code: 1009,
  }]);
});

Deno.test("no USER_HELLO within 10 s: ERROR TIMEOUT and close", () => {
  const h = new Harness();
  h.connect(1);
  h.now += 9_000;
  assert.deepEqual(closes(h.step({ kind: "tick", now: h.now })), []);
  h.now += 2_000;
  const fx = h.step({ kind: "tick", now: h.now });
  assert.deepEqual(errors(fx), ["TIMEOUT"]);
  assert.deepEqual(closes(fx), [{ conn: 1, code: 1008 }]);
  assert.deepEqual(closes(h.step({ kind: "tick", now: h.now + 5000 })), [], "reported once");
});

Deno.test("the token bucket drops frames beyond the burst and says so once", () => {
  const h = twoUsers();
  let delivered = 0;
  const errs: string[] = [];
  for (let i = 0; i < 450; i++) {
    const fx = h.frame(1, udm(ALICE, BOB, h.now + i, i));
    delivered += sent(fx, 2).length;
    errs.push(...errors(fx));
  }
  assert.equal(delivered, 399); // burst 400 minus the hello's token
  assert.deepEqual(errs, ["UNKNOWN_TYPE"]);
  h.now += 1000; // 100 tokens refill in a second
  assert.equal(sent(h.frame(1, udm(ALICE, BOB, h.now + 999, 999)), 2).length, 1);
});

Deno.test("more than 64 connections from one address are closed", () => {
  const h = new Harness();
  for (let i = 1; i <= 64; i++) assert.deepEqual(closes(h.connect(i, "10.0.0.1")), []);
  assert.deepEqual(closes(h.connect(65, "10.0.0.1")), [{ conn: 65, code: 1008 }]);
  assert.deepEqual(closes(h.connect(66, "10.0.0.2")), []);
});

Deno.test("a user leaving sends USER_REMOVE to the others; CTRL_CLOSE closes with 1000", () => {
  const h = twoUsers();
  assert.deepEqual(closes(h.frame(2, { type: "CTRL_CLOSE" })), [{ conn: 2, code: 1000 }]);
  const fx = h.step({ kind: "closed", conn: 2, now: h.now });
  const [rm] = sent(fx, 1);
  assert.equal(rm.type, "USER_REMOVE");
  assert.deepEqual(rm.payload, { user_id: BOB, server_id: SERVER });
  assert.ok(!h.state.presence.has(BOB));
  assert.equal(h.state.users.get(BOB)?.pubkey, K2, "the binding stays");
});

Deno.test("the weak-keys lab mode accepts a 1024-bit key; normally it is BAD_KEY", () => {
  const normal = new Harness();
  normal.connect(1);
  assert.deepEqual(errors(normal.hello(1, ALICE, K1024)), ["BAD_KEY"]);
  const lab = new Harness(config({ labWeakKeys: true }));
  lab.connect(1);
  assert.deepEqual(errors(lab.hello(1, ALICE, K1024)), []);
});

Deno.test("the seen cache forgets after its TTL; a repeated payload with an edited ts is a replay (PROFILE §16)", () => {
  const h = twoUsers();
  const f = dm(ALICE, BOB, h.now);
  assert.equal(sent(h.frame(1, f), 2).length, 1);
  h.now += 1000;
  assert.equal(sent(h.frame(1, { ...f, ts: h.now }), 2).length, 0, "same payload, new ts: a replay");
  h.now += 10 * 60_000 + 2000;
  h.step({ kind: "tick", now: h.now });
  assert.equal(h.state.seen.size, 0, "the DM and the hello nonces have expired");
  const other = udm(ALICE, BOB, h.now, 2);
  assert.equal(sent(h.frame(1, other), 2).length, 1);
});

Deno.test("a forged copy does not poison the seen cache: the genuine frame still gets through", () => {
  const h = twoUsers();
  const f = dm(ALICE, BOB, h.now);
  assert.deepEqual(errors(h.frame(1, { ...f, sig: "forged" }, "invalid")), ["INVALID_SIG"]);
  assert.equal(sent(h.frame(1, f), 2).length, 1);
});

Deno.test("the token bucket never runs backwards: a frame stamped earlier does not mint tokens", () => {
  const h = twoUsers();
  h.state.config.limits.rateBurst = 5;
  h.state.conns.get(1)!.tokens = 0;
  const t = h.now + 1000; // 1 s later: 100 tokens' worth, capped at the burst of 5
  const at = (ts: number, when: number) => {
    h.now = when;
    return sent(h.frame(1, udm(ALICE, BOB, ts, ts)), 2).length;
  };
  let delivered = 0;
  for (let i = 0; i < 10; i++) delivered += at(t + i, t);
  // A refusal that was stamped at arrival (earlier) must not move the bucket's clock back...
  h.now = t - 900;
  h.frame(1, "not json");
  // ...so frames at the same instant as before get nothing more.
  for (let i = 10; i < 20; i++) delivered += at(t + i, t);
  assert.equal(delivered, 5);
});

Deno.test("SERVER_WELCOME as the first frame of an inbound connection gets UNKNOWN_TYPE and a strike", () => {
  const h = new Harness();
  h.connect(1);
  const fx = h.frame(1, {
    type: "SERVER_WELCOME",
    from: "x",
    to: SERVER,
    ts: h.now,
    payload: { assigned_id: "x", servers: [], clients: [] },
    sig: "AAAA",
  }, "invalid");
  assert.deepEqual(errors(fx), ["UNKNOWN_TYPE"]);
  assert.match(JSON.stringify(sent(fx)[0].payload), /first frame must be USER_HELLO/);
  assert.equal(h.state.conns.get(1)!.strikes, 1);
});

Deno.test("a connection we dialed to join may answer only with SERVER_WELCOME, ERROR or CTRL_CLOSE", () => {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 1 });
  h.state.dials.set(7, {
    token: 7,
    purpose: "join",
    host: "127.0.0.1",
    port: 2,
    expectKey: K2,
    bootstrapIndex: 0,
  });
  h.step({ kind: "connected", conn: 3, addr: "127.0.0.1", now: h.now, dial: 7 });
  const fx = h.frame(
    3,
    {
      type: "SERVER_ANNOUNCE",
      from: "other",
      to: "*",
      ts: h.now,
      payload: { host: "127.0.0.1", port: 3, pubkey: K3 },
      sig: "SIG",
    },
    "valid",
    K3,
  );
  assert.deepEqual(errors(fx), ["UNKNOWN_TYPE"]);
  assert.match(JSON.stringify(sent(fx)[0].payload), /not expected before SERVER_WELCOME/);
  assert.equal(h.state.conns.get(3)!.strikes, 1);
  assert.equal(h.state.conns.get(3)!.role, "pending");
});
