/** Reducer tests for the public channel, files and store-and-forward (PROFILE §8–§10). */
import assert from "node:assert/strict";
import type { Effect } from "../../lib/core/types.ts";
import { fixtureKey } from "../helpers/keys.ts";
import {
  ALICE,
  BOB,
  CAROL,
  closes,
  config,
  errors,
  Harness,
  joining,
  persists,
  sent,
  SERVER,
} from "../helpers/reducer.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const K3 = (await fixtureKey("user3")).publicKey;
const S2K = (await fixtureKey("user4")).publicKey;
const CH = (await fixtureKey("user6")).publicKey; // the channel key
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const DAVE = "da4e0000-0000-4000-8000-000000000004";

function withChannel(h: Harness, version = 1): Harness {
  h.state.channel = { version, creatorPub: CH, members: new Set() };
  return h;
}

function node(): Harness {
  const h = withChannel(new Harness());
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  return h;
}

function linkS2(h: Harness, conn = 10): void {
  h.connect(conn);
  h.signed(conn, {
    type: "SERVER_HELLO_LINK",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { host: "h", port: 1, pubkey: S2K },
  });
}

function dm(from: string, to: string, ts: number) {
  return {
    type: "MSG_DIRECT",
    from,
    to,
    ts,
    payload: { ciphertext: "CT" + ts, sender_pub: "P", content_sig: "CS" },
  };
}

function effectsOf(fx: Effect[], kind: Effect["kind"]): Effect[] {
  return fx.filter((e) => e.kind === kind);
}

// --- public channel ---------------------------------------------------------------------------------------------

Deno.test("a user joining gets a sealed key share; a new member bumps the version and is announced to servers", () => {
  const h = node();
  linkS2(h);
  h.connect(1);
  const fx = h.hello(1, ALICE, K1);
  const share = fx.find((e) => e.kind === "send" && e.frame.type === "PUBLIC_CHANNEL_KEY_SHARE");
  assert.ok(share && share.kind === "send" && share.seal?.kind === "keyShare" && share.seal.forKey === K1);
  assert.equal((share.frame.payload as { creator_pub: string }).creator_pub, CH);
  assert.deepEqual(sent(fx, 10).map((f) => f.type).filter((t) => t.startsWith("PUBLIC")), [
    "PUBLIC_CHANNEL_ADD",
    "PUBLIC_CHANNEL_UPDATED",
  ]);
  const add = sent(fx, 10).find((f) => f.type === "PUBLIC_CHANNEL_ADD")!;
  assert.deepEqual(add.payload, { add: [ALICE], if_version: 1 });
  assert.equal(h.state.channel?.version, 2);
  // Order of PROFILE §6: ACK, snapshot, adverts, channel join, then queued frames.
  const types = sent(fx, 1).map((f) => f.type);
  assert.ok(types.indexOf("ACK") < types.indexOf("PUBLIC_CHANNEL_KEY_SHARE"));
  // Reconnecting: a share again, but no new version.
  h.step({ kind: "closed", conn: 1, now: h.now });
  h.now += 1000;
  h.connect(2);
  const again = h.hello(2, ALICE, K1);
  assert.ok(again.some((e) => e.kind === "send" && e.frame.type === "PUBLIC_CHANNEL_KEY_SHARE"));
  assert.equal(h.state.channel?.version, 2);
});

Deno.test("channel versions converge under concurrent joins at two servers", () => {
  // Two servers at version 5; each gets a new user at the same moment, then they exchange what they sent.
  const a = withChannel(new Harness(), 5);
  const b = withChannel(new Harness(config({ serverId: S2 })), 5);
  for (const h of [a, b]) h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 1 });
  a.connect(10);
  a.signed(10, {
    type: "SERVER_HELLO_LINK",
    from: S2,
    to: SERVER,
    ts: a.now,
    payload: { host: "h", port: 1, pubkey: S2K },
  });
  b.connect(10);
  b.signed(10, {
    type: "SERVER_HELLO_LINK",
    from: SERVER,
    to: S2,
    ts: b.now,
    payload: { host: "h", port: 2, pubkey: K3 },
  });
  a.connect(1);
  const fa = a.hello(1, ALICE, K1);
  b.connect(1);
  const fb = b.hello(1, BOB, K2);
  assert.equal(a.state.channel?.version, 6);
  assert.equal(b.state.channel?.version, 6);
  const pass = (from: Effect[], to: Harness) => {
    for (const f of sent(from, 10)) {
      if (f.type.startsWith("PUBLIC_CHANNEL")) to.signed(10, { ...f, sig: undefined });
    }
  };
  pass(fa, b);
  pass(fb, a);
  for (const h of [a, b]) {
    assert.equal(h.state.channel?.version, 6);
    assert.deepEqual([...h.state.channel!.members].sort(), [ALICE, BOB].sort());
  }
  // The next join anywhere goes to 7 everywhere.
  a.connect(2);
  const fc = a.hello(2, CAROL, K3);
  pass(fc, b);
  assert.equal(a.state.channel?.version, 7);
  assert.equal(b.state.channel?.version, 7);
});

Deno.test("the first server of a network asks for a channel key; a joiner adopts the introducer's", () => {
  const alone = new Harness();
  const fx = alone.step({ kind: "started", now: alone.now, host: "127.0.0.1", port: 1 });
  assert.equal(effectsOf(fx, "createChannel").length, 1);
  const ready = alone.step({ kind: "channelReady", now: alone.now, version: 1, creatorPub: CH });
  assert.deepEqual(persists(ready), ["channel"]);
  assert.equal(alone.state.channel?.creatorPub, CH);

  const j = new Harness(
    joining([{ host: "i", port: 1, pubkey: S2K }]),
  );
  const [d] = j.step({ kind: "started", now: j.now, host: "127.0.0.1", port: 2 }).filter((e) =>
    e.kind === "dial"
  );
  assert.ok(d && d.kind === "dial");
  j.step({ kind: "connected", conn: 20, addr: "i", now: j.now, dial: d.token });
  const w = j.signed(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: j.now,
    payload: {
      assigned_id: SERVER,
      servers: [],
      public_channel: { version: 4, creator_pub: CH, wrapped_key: "W" },
    },
  });
  const adopt = w.find((e) => e.kind === "adoptChannel");
  assert.ok(adopt && adopt.kind === "adoptChannel" && adopt.wrappedKey === "W" && adopt.version === 4);
});

Deno.test("an introducer's welcome carries the channel key, sealed for the joiner's key", () => {
  const h = node();
  h.connect(10);
  const fx = h.frame(10, {
    type: "SERVER_HELLO_JOIN",
    from: S2,
    to: "x",
    ts: h.now,
    payload: { host: "h", port: 1, pubkey: S2K },
  });
  const w = fx.find((e) => e.kind === "send" && e.frame.type === "SERVER_WELCOME");
  assert.ok(w && w.kind === "send" && w.seal?.kind === "welcome" && w.seal.forKey === S2K);
  assert.deepEqual((w.frame.payload as { public_channel: unknown }).public_channel, {
    version: 1,
    creator_pub: CH,
    wrapped_key: "",
  });
});

Deno.test("MSG_PUBLIC_CHANNEL: to the other local users unchanged, to every server re-signed; from a server, local only", () => {
  const h = node();
  linkS2(h);
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  const msg = {
    type: "MSG_PUBLIC_CHANNEL",
    from: ALICE,
    to: "public",
    ts: h.now,
    payload: { ciphertext: "C", sender_pub: K1, content_sig: "S" },
  };
  const fx = h.frame(1, msg);
  assert.equal(sent(fx, 1).length, 0, "not back to the sender");
  assert.equal(sent(fx, 2)[0].type, "MSG_PUBLIC_CHANNEL");
  assert.ok(fx.some((e) => e.kind === "send" && e.conn === 10 && e.sign && e.frame.from === ALICE));
  assert.ok(fx.some((e) => e.kind === "send" && e.conn === 2 && !e.sign));
  // From S2: delivered here, not forwarded back to any server.
  const remote = { ...msg, from: DAVE, ts: h.now + 1, payload: { ...msg.payload, ciphertext: "D" } };
  const fr = h.signed(10, remote);
  assert.deepEqual(sent(fr).map((f) => f.type), ["MSG_PUBLIC_CHANNEL", "MSG_PUBLIC_CHANNEL"]);
  assert.equal(sent(fr, 10).length, 0);
  assert.deepEqual(sent(h.signed(10, remote)), [], "a duplicate is dropped");
});

// --- store-and-forward ------------------------------------------------------------------------------------------

function offlineBob(): Harness {
  const h = node();
  h.connect(2);
  h.hello(2, BOB, K2);
  h.step({ kind: "closed", conn: 2, now: h.now });
  h.connect(1);
  h.hello(1, ALICE, K1);
  return h;
}

Deno.test("a DM to an offline local user is persisted before the ACK, then delivered in order at the next hello", () => {
  const h = offlineBob();
  const fx = h.frame(1, dm(ALICE, BOB, h.now));
  const order = fx.filter((e) => e.kind === "persist" || e.kind === "send").map((e) =>
    e.kind === "persist" ? e.op.op : e.frame.type
  );
  assert.deepEqual(order, ["enqueue", "ACK"]);
  const ack = sent(fx, 1)[0];
  assert.equal(typeof (ack.payload as { msg_ref: string }).msg_ref, "string");
  assert.match((ack.payload as { msg_ref: string }).msg_ref, /^[A-Za-z0-9_-]{43}$/);
  h.frame(1, dm(ALICE, BOB, h.now + 1));
  assert.equal(h.state.queued.get(BOB), 2);
  h.now += 1000;
  h.connect(3);
  const back = h.hello(3, BOB, K2);
  const deliver = back.find((e) => e.kind === "deliverQueued");
  assert.ok(deliver && deliver.kind === "deliverQueued" && deliver.conn === 3 && deliver.userId === BOB);
  assert.equal(back.at(-2)?.kind, "deliverQueued", "queued frames come last (PROFILE §6)");
  assert.equal(h.state.queued.get(BOB), undefined);
});

Deno.test("the offline queue is bounded per user", () => {
  const h = offlineBob();
  h.state.config.limits.maxQueuePerUser = 3;
  h.state.config.limits.ratePerSec = 1e9;
  const out = [1, 2, 3, 4].map((i) => errors(h.frame(1, dm(ALICE, BOB, h.now + i))));
  assert.deepEqual(out, [[], [], [], ["UNKNOWN_TYPE"]]);
});

Deno.test("a DM to an offline user at another server goes to the outbox with ack:true, is ACKed, and is sent when linked", () => {
  const h = node();
  linkS2(h);
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.signed(10, {
    type: "USER_ADVERTISE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2, meta: {}, pubkey: K3 },
  });
  h.now += 10;
  h.signed(10, {
    type: "USER_REMOVE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2 },
  });
  assert.equal(h.state.homes.get(DAVE), S2);
  const fx = h.frame(1, dm(ALICE, DAVE, h.now));
  assert.ok(persists(fx).includes("outbox"));
  assert.equal(sent(fx, 1)[0].type, "ACK");
  const sd = sent(fx, 10)[0];
  assert.equal(sd.type, "SERVER_DELIVER");
  assert.equal((sd.payload as { ack?: boolean }).ack, true);
  // The home server's ACK clears the outbox row.
  const acked = h.signed(10, { type: "ACK", from: S2, to: SERVER, ts: h.now, payload: { msg_ref: "REF" } });
  assert.ok(acked.some((e) => e.kind === "outboxAcked" && e.serverId === S2 && e.msgRef === "REF"));
  // Unreachable home: outbox only, flushed when the link comes back.
  h.step({ kind: "closed", conn: 10, now: h.now });
  const fx2 = h.frame(1, dm(ALICE, DAVE, h.now + 5));
  assert.equal(sent(fx2, 10).length, 0);
  assert.equal(h.state.outbox.get(S2), 1);
  h.connect(11);
  const up = h.signed(11, {
    type: "SERVER_HELLO_LINK",
    from: S2,
    to: SERVER,
    ts: h.now + 6,
    payload: { host: "h", port: 1, pubkey: S2K },
  });
  assert.ok(up.some((e) => e.kind === "flushOutbox" && e.serverId === S2));
});

Deno.test("home side: an ack-requested SERVER_DELIVER is queued and ACKed, and a resend is ACKed again, not queued twice", () => {
  const h = node();
  linkS2(h);
  h.connect(2);
  h.hello(2, BOB, K2);
  h.step({ kind: "closed", conn: 2, now: h.now });
  const f = {
    type: "SERVER_DELIVER",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { user_id: BOB, ciphertext: "C", sender: DAVE, sender_pub: "P", content_sig: "S", ack: true },
  };
  const first = h.signed(10, f);
  assert.ok(persists(first).includes("enqueue") && persists(first).includes("acceptRef"));
  assert.equal(sent(first, 10)[0].type, "ACK");
  // After a restart the seen cache is empty, but the accepted refs are loaded from the store.
  const refs = [...h.state.acceptedRefs];
  const restarted = withChannel(new Harness());
  restarted.state.acceptedRefs = new Map(refs);
  restarted.state.users = h.state.users;
  restarted.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 1 });
  linkS2(restarted);
  const again = restarted.signed(10, f);
  assert.equal(sent(again, 10)[0].type, "ACK");
  assert.ok(!persists(again).includes("enqueue"));
});

// --- files ------------------------------------------------------------------------------------------------------

function start(from: string, to: string, ts: number, size: number, extra = {}) {
  return {
    type: "FILE_START",
    from,
    to,
    ts,
    payload: { file_id: "f1", name: "a.txt", size, sha256: "0".repeat(64), mode: "dm", ...extra },
  };
}

Deno.test("files: routed to a local recipient unchanged, ACKed at FILE_END", () => {
  const h = node();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  assert.equal(sent(h.frame(1, start(ALICE, BOB, h.now, 10)), 2)[0].type, "FILE_START");
  assert.equal(
    sent(
      h.frame(1, {
        type: "FILE_CHUNK",
        from: ALICE,
        to: BOB,
        ts: h.now,
        payload: { file_id: "f1", index: 0, ciphertext: "A".repeat(683) },
      }),
      2,
    )[0].type,
    "FILE_CHUNK",
  );
  const end = h.frame(1, {
    type: "FILE_END",
    from: ALICE,
    to: BOB,
    ts: h.now + 1,
    payload: { file_id: "f1" },
  });
  assert.equal(sent(end, 2)[0].type, "FILE_END");
  assert.equal(sent(end, 1)[0].type, "ACK");
  assert.equal(h.state.transfers.size, 0);
});

Deno.test("files: too large, unknown file_id, more data than announced, and an offline recipient are refused with reasons", () => {
  const h = node();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  const big = h.frame(1, start(ALICE, BOB, h.now, 17 * 1024 * 1024));
  assert.match((sent(big, 1)[0].payload as { detail: string }).detail, /17 MiB; the limit is 16 MiB/);
  assert.equal(sent(big, 2).length, 0);
  const unknown = h.frame(1, {
    type: "FILE_CHUNK",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: "nope", index: 0, ciphertext: "AA" },
  });
  assert.match((sent(unknown, 1)[0].payload as { detail: string }).detail, /unknown file_id/);
  h.frame(1, start(ALICE, BOB, h.now + 1, 100));
  const flood = h.frame(1, {
    type: "FILE_CHUNK",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: "f1", index: 0, ciphertext: "A".repeat(200_000) },
  });
  assert.match(
    (sent(flood, 1)[0].payload as { detail: string }).detail,
    /more data than its announced 100 bytes/,
  );
  assert.equal(sent(flood, 2)[0].type, "ERROR", "the recipient hears why too");
  assert.deepEqual(errors(h.frame(1, start(ALICE, CAROL, h.now + 2, 10, { file_id: "f2" }))), [
    "USER_NOT_FOUND",
  ]);
});

Deno.test("files: a transfer without a chunk for 5 minutes is dropped and both ends are told", () => {
  const h = node();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  h.frame(1, start(ALICE, BOB, h.now, 10));
  h.now += 5 * 60_000 + 1;
  const fx = h.step({ kind: "tick", now: h.now });
  assert.deepEqual(errors(fx), ["TIMEOUT", "TIMEOUT"]);
  assert.equal(h.state.transfers.size, 0);
  assert.deepEqual(closes(fx), []);
});

Deno.test("files to a user on another server are re-signed per hop; public files reach everyone", () => {
  const h = node();
  linkS2(h);
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  h.signed(10, {
    type: "USER_ADVERTISE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2, meta: {}, pubkey: K3 },
  });
  const fx = h.frame(1, start(ALICE, DAVE, h.now, 10));
  assert.ok(
    fx.some((e) =>
      e.kind === "send" && e.conn === 10 && e.sign && e.frame.type === "FILE_START" && e.frame.from === ALICE
    ),
  );
  const pub = h.frame(1, start(ALICE, "public", h.now, 10, { file_id: "p1", mode: "public" }));
  assert.equal(sent(pub, 2)[0].type, "FILE_START");
  assert.ok(pub.some((e) => e.kind === "send" && e.conn === 10 && e.sign));
  assert.equal(sent(pub, 1).length, 0);
});

Deno.test("files: one sender may have at most 16 transfers open", () => {
  const h = node();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  const results = Array.from(
    { length: 17 },
    (_, i) => errors(h.frame(1, start(ALICE, BOB, h.now + i, 10, { file_id: `f${i}` }))),
  );
  assert.deepEqual(results.slice(0, 16).flat(), []);
  assert.deepEqual(results[16], ["UNKNOWN_TYPE"]);
});
