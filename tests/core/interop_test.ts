/** Reducer tests for the deployed forms of PROFILE §15 (issue 8, server side), one rule per test. */
import assert from "node:assert/strict";
import type { Effect } from "../../lib/core/types.ts";
import { fixtureKey } from "../helpers/keys.ts";
import {
  ALICE,
  BOB,
  closes,
  dials,
  errors,
  Harness,
  joining,
  persists,
  sent,
  SERVER,
} from "../helpers/reducer.ts";

const UK = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const S2K = (await fixtureKey("user4")).publicKey;
const OTHER = (await fixtureKey("user6")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const DAVE = "da4e0000-0000-4000-8000-000000000004";

/** A node with S2 linked on conn 10 (S2 joined us) and Alice local on conn 1. */
function linked(): Harness {
  return new Harness().linkedTo(S2, S2K, { user: { conn: 1, id: ALICE, key: UK } });
}

function strikes(h: Harness, conn: number): number {
  return h.state.conns.get(conn)?.strikes ?? -1;
}

function effectsOf<K extends Effect["kind"]>(fx: Effect[], kind: K): Extract<Effect, { kind: K }>[] {
  return fx.filter((e): e is Extract<Effect, { kind: K }> => e.kind === kind);
}

// --- item 3: echoes ---------------------------------------------------------------------------------------

Deno.test("an echo of our own frame on a server link is dropped silently: no ERROR, no strike", () => {
  const h = linked();
  const echo = {
    type: "USER_ADVERTISE",
    from: SERVER,
    to: "*",
    ts: h.now,
    payload: { user_id: ALICE, server_id: SERVER, meta: {}, pubkey: UK },
    sig: "OURS",
  };
  for (let i = 0; i < 12; i++) {
    const fx = h.frame(10, { ...echo, ts: h.now + i }, "invalid");
    assert.deepEqual(sent(fx), []);
    assert.deepEqual(closes(fx), []);
  }
  assert.equal(strikes(h, 10), 0);
  assert.equal(h.state.links.get(S2), 10, "the link stays up");
});

Deno.test("an echo of a local user's public message is not delivered again to our users", () => {
  const h = linked();
  h.connect(2);
  h.hello(2, BOB, K2);
  const pub = {
    type: "MSG_PUBLIC_CHANNEL",
    from: ALICE,
    to: "public",
    ts: h.now,
    payload: { ciphertext: "C", sender_pub: UK, content_sig: "S" },
  };
  const fx = h.signed(10, pub);
  assert.deepEqual(sent(fx), []);
  assert.equal(strikes(h, 10), 0);
});

// --- item 4: channel shapes -------------------------------------------------------------------------------

Deno.test("PUBLIC_CHANNEL_UPDATED {version, added} without wraps adds the members and takes the version", () => {
  const h = linked();
  h.state.channel = { version: 1, creatorPub: OTHER, members: new Set() };
  const fx = h.signed(10, {
    type: "PUBLIC_CHANNEL_UPDATED",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { version: 2, added: [DAVE, { member_id: BOB }, 7] },
  });
  assert.deepEqual(errors(fx), []);
  assert.equal(h.state.channel.version, 2);
  assert.ok(h.state.channel.members.has(DAVE) && h.state.channel.members.has(BOB));
  const removed = h.signed(10, {
    type: "PUBLIC_CHANNEL_UPDATED",
    from: S2,
    to: "*",
    ts: h.now + 1,
    payload: { version: 3, removed: [DAVE] },
  });
  assert.deepEqual(errors(removed), []);
  assert.ok(h.state.channel.members.has(DAVE), "members only grow");
  assert.equal(strikes(h, 10), 0);
});

Deno.test("KEY_SHARE entries with `wrapped` or `wrapped_key`, or an UPDATED we cannot read, are ignored, never struck", () => {
  const h = linked();
  for (const [i, field] of ["wrapped", "wrapped_key"].entries()) {
    const fx = h.frame(
      10,
      {
        type: "PUBLIC_CHANNEL_KEY_SHARE",
        from: S2,
        to: "*",
        ts: h.now + i,
        payload: { shares: [{ member: ALICE, [field]: "W" }], creator_pub: OTHER, content_sig: "" },
        sig: "SIG",
      },
      "valid",
      S2K,
    );
    assert.deepEqual(sent(fx), [], field);
  }
  const odd = h.frame(
    10,
    {
      type: "PUBLIC_CHANNEL_UPDATED",
      from: S2,
      to: "*",
      ts: h.now + 5,
      payload: { version: "two" },
      sig: "SIG",
    },
    "valid",
    S2K,
  );
  assert.deepEqual(sent(odd), []);
  assert.equal(strikes(h, 10), 0);
  // A user connection gets no such leniency: a malformed frame there is still refused.
  assert.deepEqual(
    errors(h.frame(1, { type: "PUBLIC_CHANNEL_UPDATED", from: ALICE, to: "*", ts: h.now, payload: {} })),
    ["UNKNOWN_TYPE"],
  );
});

// --- item 5: welcome variants and the address-less announce -----------------------------------------------

function joiner() {
  const h = new Harness(joining([{ host: "intro", port: 1, pubkey: S2K }]));
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  h.step({ kind: "connected", conn: 20, addr: "intro", now: h.now, dial: d.token });
  return h;
}

Deno.test("welcome with assigned_id null, server_pub and snapshot.user_locations: our id is kept, homes learned", () => {
  const h = joiner();
  const fx = h.signed(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: {
      server_id: S2,
      server_pub: S2K,
      snapshot: { user_locations: { [DAVE]: S2, [BOB]: "elsewhere" } },
      assigned_id: null,
    },
  });
  assert.deepEqual(errors(fx), []);
  assert.equal(h.state.config.serverId, SERVER);
  assert.equal(h.state.links.get(S2), 20);
  assert.equal(h.state.homes.get(DAVE), S2);
  assert.ok(!h.state.homes.has(BOB), "a server speaks only for its own users");
});

Deno.test("welcome {host, port, pubkey, role} without assigned_id links; a pubkey other than the bootstrap key is refused", () => {
  const h = joiner();
  const ok = h.signed(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { host: "intro", port: 1, pubkey: S2K, role: "introducer" },
  });
  assert.deepEqual(errors(ok), []);
  assert.equal(h.state.links.get(S2), 20);
  assert.equal(h.state.config.serverId, SERVER);

  const bad = joiner();
  const fx = bad.signed(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: bad.now,
    payload: { host: "intro", port: 1, pubkey: OTHER },
  });
  assert.deepEqual(closes(fx), [{ conn: 20, code: 1008 }]);
  assert.equal(bad.state.links.size, 0);
});

Deno.test("an unsigned welcome is still refused (it cannot be told from an injected one)", () => {
  const h = joiner();
  const fx = h.frame(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { server_pub: S2K, assigned_id: null },
    sig: "",
  });
  // PROFILE §16: a failed join (one ERROR, closed, a WARN naming both fingerprints), not a link.
  assert.deepEqual(errors(fx), ["INVALID_SIG"]);
  assert.deepEqual(closes(fx), [{ conn: 20, code: 1000 }]);
  assert.ok(fx.some((e) => e.kind === "log" && e.event === "join.wrong_key" && e.level === "warn"));
  assert.equal(h.state.links.size, 0);
});

Deno.test("SERVER_ANNOUNCE {server_id, user_locations} on a link is presence information, not an error", () => {
  const h = linked();
  const fx = h.signed(10, {
    type: "SERVER_ANNOUNCE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { server_id: S2, user_locations: { [DAVE]: S2 } },
  });
  assert.deepEqual(sent(fx), []);
  assert.equal(h.state.homes.get(DAVE), S2);
  assert.deepEqual(dials(fx), []);
  // As the first frame of an inbound connection it cannot open a link: one clear ERROR and a close.
  h.connect(11);
  const first = h.signed(11, {
    type: "SERVER_ANNOUNCE",
    from: "5e3f0000-0000-4000-8000-00000000c0de",
    to: "*",
    ts: h.now,
    payload: { server_id: "x", user_locations: {}, pubkey: OTHER },
  });
  assert.deepEqual(errors(first), ["UNKNOWN_TYPE"]);
  assert.deepEqual(closes(first), [{ conn: 11, code: 1008 }]);
});

// --- item 6: our welcome -----------------------------------------------------------------------------------

Deno.test("our SERVER_WELCOME carries pubkey, host and port (and software) besides assigned_id and server_pub", () => {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  h.connect(10);
  const w = sent(
    h.signed(10, {
      type: "SERVER_HELLO_JOIN",
      from: S2,
      to: "x",
      ts: h.now,
      payload: { host: "h", port: 1, pubkey: S2K },
    }),
    10,
  )[0];
  assert.ok(w.type === "SERVER_WELCOME");
  const p = w.payload;
  assert.equal(p.assigned_id, S2);
  assert.equal(p.server_pub, "SERVER-PUB");
  assert.equal(p.pubkey, "SERVER-PUB");
  assert.equal(p.host, "127.0.0.1");
  assert.equal(p.port, 8765);
  assert.match(p.software ?? "", /^socp-deno\//);
  assert.ok(Array.isArray(p.servers) && Array.isArray(p.clients));
});

// --- item 7: orig_ts ---------------------------------------------------------------------------------------

Deno.test("every SERVER_DELIVER we originate carries orig_ts (live and outbox); orig_ts wins on input", () => {
  const h = linked();
  h.step({ kind: "software", now: h.now, serverId: S2, software: "socp-deno/0.1.0" });
  h.signed(10, {
    type: "USER_ADVERTISE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2, meta: {}, pubkey: K2 },
  });
  const live = sent(
    h.frame(1, {
      type: "MSG_DIRECT",
      from: ALICE,
      to: DAVE,
      ts: h.now - 7,
      payload: { ciphertext: "C", sender_pub: UK, content_sig: "S" },
    }),
    10,
  )[0];
  assert.ok(live.type === "SERVER_DELIVER" && live.payload.orig_ts === h.now - 7);
  assert.equal(live.payload.cts, h.now - 7, "cts too (issue 17)");
  h.now += 10;
  h.signed(10, {
    type: "USER_REMOVE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2 },
  });
  const held = sent(
    h.frame(1, {
      type: "MSG_DIRECT",
      from: ALICE,
      to: DAVE,
      ts: h.now - 3,
      payload: { ciphertext: "C2", sender_pub: UK, content_sig: "S" },
    }),
    10,
  )[0];
  assert.ok(
    held.type === "SERVER_DELIVER" && held.payload.orig_ts === h.now - 3 && held.payload.ack === true,
  );
});

// --- item 8: liveness ----------------------------------------------------------------------------------------

Deno.test("a linked server that never sends HEARTBEAT (pings only) is not closed for silence", () => {
  const h = linked();
  for (let i = 0; i < 10; i++) {
    h.now += 30_000;
    const fx = h.step({ kind: "tick", now: h.now });
    assert.deepEqual(closes(fx), []);
    assert.deepEqual(sent(fx, 10).map((f) => f.type), ["HEARTBEAT"], "we keep heartbeating");
  }
  assert.equal(h.state.links.get(S2), 10);
});

Deno.test("once the server has sent a HEARTBEAT of its own, 45 s of silence closes the link; relayed heartbeats do not count", () => {
  const h = linked();
  // A HEARTBEAT from another server relayed over this link does not make S2 a heartbeating server.
  h.state.servers.set("other", { serverId: "other", host: "o", port: 1, pubkey: OTHER });
  h.signed(10, { type: "HEARTBEAT", from: "other", to: "*", ts: h.now, payload: {} });
  h.now += 46_000;
  assert.deepEqual(closes(h.step({ kind: "tick", now: h.now })), []);
  h.signed(10, { type: "HEARTBEAT", from: S2, to: SERVER, ts: h.now, payload: {} });
  h.now += 46_000;
  assert.deepEqual(closes(h.step({ kind: "tick", now: h.now })), [{ conn: 10, code: 1001 }]);
});

// --- item 9: re-linking ------------------------------------------------------------------------------------

/** S2 is pinned (it was linked before); we dial it. Returns the dial token. */
function redialing(): { h: Harness; token: number } {
  const h = new Harness();
  h.state.servers.set(S2, { serverId: S2, host: "s2", port: 9000, pubkey: S2K });
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  return { h, token: d.token };
}

Deno.test("a link we dial is up only at the peer's first verified frame", () => {
  const { h, token } = redialing();
  const fx = h.step({ kind: "connected", conn: 30, addr: "s2", now: h.now, dial: token });
  assert.deepEqual(sent(fx, 30).map((f) => f.type), ["SERVER_HELLO_LINK"]);
  assert.ok(!h.state.links.has(S2));
  const forged = h.frame(
    30,
    { type: "HEARTBEAT", from: S2, to: SERVER, ts: h.now, payload: {}, sig: "x" },
    "invalid",
  );
  assert.deepEqual(errors(forged), ["INVALID_SIG"]);
  assert.ok(!h.state.links.has(S2));
  h.signed(30, { type: "HEARTBEAT", from: S2, to: SERVER, ts: h.now, payload: {} });
  assert.equal(h.state.links.get(S2), 30);
  assert.ok(!h.state.backoff.has(S2), "a link that carried a frame resets the backoff");
});

Deno.test("a LINK answered by ERROR is redialed with JOIN, no ERROR back, and the welcome brings the link up", () => {
  const { h, token } = redialing();
  h.step({ kind: "connected", conn: 30, addr: "s2", now: h.now, dial: token });
  const refused = h.frame(30, {
    type: "ERROR",
    from: "server",
    to: SERVER,
    ts: h.now,
    payload: { code: "UNKNOWN_TYPE", detail: "expected PEER_HELLO_LINK or USER_HELLO" },
    sig: "",
  });
  assert.deepEqual(errors(refused), [], "an ERROR is never answered with an ERROR");
  assert.deepEqual(closes(refused), [{ conn: 30, code: 1000 }]);
  const [again] = dials(h.step({ kind: "closed", conn: 30, now: h.now }));
  assert.equal(again.url, "ws://s2:9000");
  assert.equal(again.afterMs, 2000, "the backoff kept growing");
  const fx = h.step({ kind: "connected", conn: 31, addr: "s2", now: h.now, dial: again.token });
  const [join] = sent(fx, 31);
  assert.equal(join.type, "SERVER_HELLO_JOIN");
  h.signed(31, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { assigned_id: "another-id", server_pub: S2K, servers: [] },
  });
  assert.equal(h.state.links.get(S2), 31);
  assert.equal(h.state.config.serverId, SERVER, "a re-link keeps our id");
  assert.equal(h.state.helloKind.get(S2), "join", "JOIN is remembered for this server");
});

Deno.test("instant closes never reset the backoff: 1, 2, 4, 8 s, alternating LINK and JOIN", () => {
  const { h, token } = redialing();
  let t = token;
  const waits: number[] = [];
  const hellos: string[] = [];
  for (let i = 0; i < 4; i++) {
    const fx = h.step({ kind: "connected", conn: 40 + i, addr: "s2", now: h.now, dial: t });
    hellos.push(sent(fx, 40 + i)[0].type);
    const [next] = dials(h.step({ kind: "closed", conn: 40 + i, now: h.now }));
    waits.push(next.afterMs);
    t = next.token;
  }
  assert.deepEqual(waits, [2000, 4000, 8000, 16000]);
  assert.deepEqual(hellos, [
    "SERVER_HELLO_LINK",
    "SERVER_HELLO_JOIN",
    "SERVER_HELLO_LINK",
    "SERVER_HELLO_JOIN",
  ]);
});

// --- item 10: the outbox ACK extension ---------------------------------------------------------------------

function offlineDave(h: Harness): Effect[] {
  h.signed(10, {
    type: "USER_ADVERTISE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2, meta: {}, pubkey: K2 },
  });
  h.now += 10;
  h.signed(10, {
    type: "USER_REMOVE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2 },
  });
  return h.frame(1, {
    type: "MSG_DIRECT",
    from: ALICE,
    to: DAVE,
    ts: h.now,
    payload: { ciphertext: "C" + h.now, sender_pub: UK, content_sig: "S" },
  });
}

Deno.test("a link asks the server's /.well-known/socp whether it speaks the ACK extension", () => {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  h.connect(10);
  const fx = h.signed(10, {
    type: "SERVER_HELLO_JOIN",
    from: S2,
    to: "x",
    ts: h.now,
    payload: { host: "s2.example", port: 9000, pubkey: S2K },
  });
  assert.deepEqual(effectsOf(fx, "probe").map((e) => e.url), ["http://s2.example:9000/.well-known/socp"]);
});

Deno.test("to a server that does not say socp/…, a DM for an offline user is handed to the live link: no ack, no outbox", () => {
  const h = linked();
  h.step({ kind: "software", now: h.now, serverId: S2, software: "pysocp/1.3" });
  const fx = offlineDave(h);
  const [d] = sent(fx, 10);
  assert.ok(d.type === "SERVER_DELIVER" && d.payload.ack === undefined);
  assert.ok(!persists(fx).includes("outbox"));
  assert.equal(sent(fx, 1)[0].type, "ACK", "the sender hears it was accepted");
  assert.ok(!h.state.outbox.has(S2));
});

Deno.test("to a socp server the outbox keeps the frame until its ACK", () => {
  const h = linked();
  h.step({ kind: "software", now: h.now, serverId: S2, software: "socp-deno/0.1.0" });
  const fx = offlineDave(h);
  assert.ok(persists(fx).includes("outbox"));
  const [d] = sent(fx, 10);
  assert.ok(d.type === "SERVER_DELIVER" && d.payload.ack === true);
  assert.equal(h.state.outbox.get(S2), 1);
});

Deno.test("frames sent with ack before the answer came are dropped from the outbox when the server turns out not to ACK", () => {
  const h = linked();
  const fx = offlineDave(h); // software unknown yet: kept, sent with ack
  assert.ok(persists(fx).includes("outbox"));
  const later = h.step({ kind: "software", now: h.now, serverId: S2, software: "" });
  assert.deepEqual(effectsOf(later, "outboxHanded").map((e) => e.serverId), [S2]);
  assert.ok(!h.state.outbox.has(S2));
});

Deno.test("the outbox is flushed without the ACK extension (and forgotten) to a server that does not speak it", () => {
  const h = linked();
  h.step({ kind: "software", now: h.now, serverId: S2, software: "other/1" });
  h.step({ kind: "closed", conn: 10, now: h.now });
  h.state.outbox.set(S2, 2);
  h.connect(11);
  const up = h.signed(11, {
    type: "SERVER_HELLO_LINK",
    from: S2,
    to: SERVER,
    ts: h.now + 1,
    payload: { host: "127.0.0.1", port: 9000, pubkey: S2K },
  });
  assert.deepEqual(effectsOf(up, "flushOutbox").map((e) => [e.serverId, e.confirm]), [[S2, false]]);
  assert.ok(!h.state.outbox.has(S2));
});

// --- item 11: frames signed under another name -------------------------------------------------------------

Deno.test('frames signed as "key1" on a link are verified with the link\'s key and treated as from its server', () => {
  const h = linked();
  const hb = h.signed(10, { type: "HEARTBEAT", from: "key1", to: SERVER, ts: h.now, payload: {} });
  assert.deepEqual(errors(hb), []);
  assert.equal(h.state.conns.get(10)?.peerHeartbeats, true, "its heartbeat counts as the link server's");
  const fx = h.signed(10, {
    type: "SERVER_DELIVER",
    from: "key1",
    to: SERVER,
    ts: h.now,
    payload: { user_id: ALICE, ciphertext: "C", sender: DAVE, sender_pub: K2, content_sig: "S" },
  });
  assert.deepEqual(sent(fx, 1).map((f) => f.type), ["USER_DELIVER"]);
  const adv = h.signed(10, {
    type: "USER_ADVERTISE",
    from: "server",
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: S2, meta: {}, pubkey: K2 },
  });
  assert.deepEqual(errors(adv), []);
  assert.equal(h.state.presence.get(DAVE)?.serverId, S2);
  // Not signed by the link's key: refused as before.
  const forged = h.frame(
    10,
    { type: "HEARTBEAT", from: "key1", to: SERVER, ts: h.now + 1, payload: {}, sig: "x" },
    "valid",
    OTHER,
  );
  assert.deepEqual(errors(forged), ["INVALID_SIG"]);
});

// --- item 12: bootstrap URLs ---------------------------------------------------------------------------------

Deno.test("a bootstrap URL's path and scheme go into the dial, and into redials of that server", () => {
  const h = new Harness(joining([{ host: "intro", port: 8080, pubkey: S2K, path: "/chat", tls: true }]));
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  assert.equal(d.url, "wss://intro:8080/chat");
  h.step({ kind: "connected", conn: 20, addr: "intro", now: h.now, dial: d.token });
  h.signed(20, { type: "SERVER_WELCOME", from: S2, to: SERVER, ts: h.now, payload: { server_pub: S2K } });
  assert.equal(h.state.links.get(S2), 20);
  const [again] = dials(h.step({ kind: "closed", conn: 20, now: h.now }));
  assert.equal(again.url, "wss://intro:8080/chat");
});

// --- item 13: server-composed details ------------------------------------------------------------------------

Deno.test("a frame under a name we do not know that fails the link's key is refused with a detail that says so", () => {
  const h = linked();
  const fx = h.frame(10, {
    type: "USER_REMOVE",
    from: "5e3f0000-0000-4000-8000-00000000c0de",
    to: "*",
    ts: h.now,
    payload: { user_id: DAVE, server_id: "5e3f0000-0000-4000-8000-00000000c0de" },
    sig: "x",
  }, "invalid");
  const [err] = sent(fx, 10);
  assert.ok(err.type === "ERROR");
  assert.match(
    err.payload.detail ?? "",
    /not a server we know, so read as from 9c2d.* does not verify with the pinned key of 9c2d/,
  );
});

Deno.test("a welcome whose payload names the introducer (server_id) links to that id, whatever its `from`", () => {
  const h = joiner();
  h.signed(20, {
    type: "SERVER_WELCOME",
    from: "server",
    to: SERVER,
    ts: h.now,
    payload: { server_id: S2, server_pub: S2K, assigned_id: null },
  });
  assert.equal(h.state.links.get(S2), 20);
  assert.ok(!h.state.links.has("server"));
  // Its later frames under that generic name are the link's server's.
  const hb = h.signed(20, { type: "HEARTBEAT", from: "server", to: SERVER, ts: h.now, payload: {} });
  assert.deepEqual(errors(hb), []);
});

Deno.test("a server whose /.well-known/socp answered only over https is redialed with wss://", () => {
  const h = joiner();
  h.signed(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { server_pub: S2K, assigned_id: null },
  });
  assert.equal(h.state.links.get(S2), 20);
  h.step({ kind: "software", now: h.now, serverId: S2, software: "socp-deno/0.1.0", tls: true });
  const [again] = dials(h.step({ kind: "closed", conn: 20, now: h.now }));
  assert.equal(again.url, "wss://intro:1");
});
