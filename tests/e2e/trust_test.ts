/**
 * PROFILE §16 end to end: the attacks of issue 14 against real node processes, each performed as an attacker
 * would (ordinary clients and raw or scripted peers in the default configuration), each refused.
 * Every test starts its own nodes and stops them, so tests do not depend on each other.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import type { PrivateKey } from "../../lib/crypto/rsa.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { ScriptedConn, signPayload } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";
import { deliverFrom, health, linked, opts, TIMERS } from "../interop/common.ts";

const ALICE = "a11ce000-0000-4000-8000-00000000a001";
const BOB = "b0b00000-0000-4000-8000-00000000b002";
const [alice, bob, mallory, s2key] = await Promise.all(["user1", "user2", "user3", "user4"].map(fixtureKey));

/** Collect a client's events from now on. */
function watch(c: SocpClient): ClientEvent[] {
  const got = c.drainBuffered();
  c.onEvent = (e) => got.push(e);
  return got;
}

/** Open a WebSocket to `url` as a scripted peer that signs with `key`. */
async function dialAs(url: string, key: PrivateKey): Promise<ScriptedConn> {
  const ws = new WebSocket(url);
  const conn = new ScriptedConn(ws, key);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error(`cannot connect to ${url}`)), { once: true });
  });
  return conn;
}

/** A node, stopped when the test is over. */
async function node(
  args: string[] = [],
  dataDir?: string,
  env?: Record<string, string>,
): Promise<NodeProcess & AsyncDisposable> {
  const n = await NodeProcess.start({ args: [...TIMERS, ...args], dataDir, env });
  return Object.assign(n, { [Symbol.asyncDispose]: async () => void await n.kill() });
}

/** A second node joined through `n1` (with n1's real key), once they are linked. */
async function joinedTo(n1: NodeProcess): Promise<NodeProcess & AsyncDisposable> {
  const n2 = await node(["--bootstrap", `127.0.0.1:${n1.port}#${(await wellKnown(n1)).pubkey}`]);
  await linked(n1, 1);
  return n2;
}

async function wellKnown(n: NodeProcess): Promise<{ server_id: string; pubkey: string }> {
  return await (await fetch(`${n.http}/.well-known/socp`)).json();
}

Deno.test({
  name: "an unsigned hello for a registered user is refused: no session, her queued DM waits for her",
  ...opts,
}, async () => {
  await using n = await node();
  const a = await SocpClient.connect(n.url, { userId: ALICE, key: alice, reconnect: false });
  const b = await SocpClient.connect(n.url, { userId: BOB, key: bob, reconnect: false });
  await until(() => b.directory.has(ALICE), "Bob sees Alice");
  await a.close();
  await until(() => !b.directory.has(ALICE), "Alice offline");
  await b.tell(ALICE, "for alice only");
  await until(() => b.messages().some((m) => m.state === "accepted"), "the DM queued for offline Alice");
  // The attack: Alice's id and public key (both public), no signature.
  const thief = await RawPeer.open(n.url);
  thief.send({
    type: "USER_HELLO",
    from: ALICE,
    to: "",
    ts: Date.now(),
    payload: { client: "thief", pubkey: alice.publicKey, enc_pubkey: alice.publicKey },
    sig: "",
  });
  const err = await thief.error("INVALID_SIG");
  assert.match(err.payload.detail, /registered: the hello is unsigned/);
  assert.equal(thief.count("USER_DELIVER"), 0);
  assert.equal(thief.count("ACK"), 0);
  // The real Alice signs in and gets her DM.
  const back = await SocpClient.connect(n.url, { userId: ALICE, key: alice, reconnect: false });
  const got = watch(back);
  const dm = await until(() => got.find((e) => e.kind === "dm"), "Alice's queued DM");
  assert.ok(dm.kind === "dm" && dm.text === "for alice only" && dm.verified);
  thief.close();
  await back.close();
  await b.close();
});

Deno.test({
  name: "a newer signed session of the same user takes over the older one, which is told in words",
  ...opts,
}, async () => {
  await using n = await node();
  const first = await RawPeer.open(n.url);
  const a1 = await SocpClient.connect(n.url, { userId: ALICE, key: alice, reconnect: false });
  const a2 = await SocpClient.connect(n.url, { userId: ALICE, key: alice, reconnect: false });
  assert.ok(a2.connected);
  await until(() => !a1.connected, "the older session is closed");
  assert.ok(n.logs.some((l) => l.includes("user.taken_over")));
  first.close();
  await a2.close();
});

Deno.test({
  name: "key substitution: another server cannot bind a known user's id to another key, nor advertise it",
  ...opts,
}, async () => {
  await using n1 = await node();
  await using n2 = await joinedTo(n1);
  // Alice is seen on n1 (n2 pins her key from n1's advert), then goes offline.
  const a = await SocpClient.connect(n1.url, { userId: ALICE, key: alice, reconnect: false });
  const b = await SocpClient.connect(n2.url, { userId: BOB, key: bob, displayName: "bob" });
  await until(() => b.directory.has(ALICE), "Bob sees Alice");
  await a.close();
  await until(() => !b.directory.has(ALICE), "Alice offline");
  // Mallory says hello at n2 with Alice's id and her own key.
  const m = await RawPeer.open(n2.url);
  m.send({
    type: "USER_HELLO",
    from: ALICE,
    to: "",
    ts: Date.now(),
    payload: { client: "mallory", pubkey: mallory.publicKey, meta: { display_name: "alice" } },
    sig: "",
  });
  const err = await m.error("BAD_KEY");
  assert.match(err.payload.detail, /bound to another key on this network/);
  assert.ok(n2.logs.some((l) => l.includes("user.key_conflict")));
  // A federated server advertising Alice with its own key: refused at n1, never relayed to Bob.
  const s2 = await dialAs(n1.url, s2key);
  const s2id = crypto.randomUUID();
  await s2.send({
    type: "SERVER_HELLO_JOIN",
    from: s2id,
    to: `127.0.0.1:${n1.port}`,
    payload: { host: "127.0.0.1", port: 1, pubkey: s2key.publicKey },
  });
  await s2.waitFor((f) => f.type === "SERVER_WELCOME", "welcome");
  await s2.send({
    type: "USER_ADVERTISE",
    from: s2id,
    to: "*",
    payload: {
      user_id: ALICE,
      server_id: s2id,
      meta: { display_name: "alice", pubkey: mallory.publicKey },
      pubkey: mallory.publicKey,
    },
  });
  const refused = await s2.waitFor((f) => f.type === "ERROR" && f.payload.code === "BAD_KEY", "BAD_KEY");
  assert.match(refused.payload.detail, /pinned to another key/);
  // The real Alice comes back at n1: Bob's DM reaches her, verified.
  const back = await SocpClient.connect(n1.url, { userId: ALICE, key: alice, reconnect: false });
  const got = watch(back);
  await until(() => b.directory.has(ALICE), "Bob sees Alice again");
  assert.equal(b.directory.get(ALICE)?.pubkey, alice.publicKey, "Bob never saw another key for Alice");
  await b.tell(ALICE, "to the real alice");
  const dm = await until(() => got.find((e) => e.kind === "dm"), "Bob's DM at the real Alice");
  assert.ok(dm.kind === "dm" && dm.text === "to the real alice" && dm.verified);
  s2.close();
  m.close();
  await back.close();
  await b.close();
});

Deno.test({
  name: "link hijack: an unsigned JOIN repeating a linked server's id and key is refused; the link stays",
  ...opts,
}, async () => {
  await using n1 = await node();
  await using n2 = await joinedTo(n1);
  const wk2 = await wellKnown(n2);
  const thief = await RawPeer.open(n1.url);
  thief.send({
    type: "SERVER_HELLO_JOIN",
    from: wk2.server_id,
    to: `127.0.0.1:${n1.port}`,
    ts: Date.now(),
    payload: { host: "127.0.0.1", port: 9, pubkey: wk2.pubkey },
    sig: "",
  });
  const err = await thief.error("INVALID_SIG");
  assert.match(err.payload.detail, /pinned to a server of this network/);
  await thief.closed;
  assert.equal(thief.count("SERVER_WELCOME"), 0);
  // A DM from n1 to n2 still crosses the real link.
  const a = await SocpClient.connect(n1.url, { userId: ALICE, key: alice, reconnect: false });
  const b = await SocpClient.connect(n2.url, { userId: BOB, key: bob, reconnect: false });
  const got = watch(b);
  await until(() => a.directory.has(BOB), "Alice sees Bob");
  await a.tell(BOB, "over the real link");
  const dm = await until(() => got.find((e) => e.kind === "dm"), "the DM at Bob");
  assert.ok(dm.kind === "dm" && dm.text === "over the real link");
  assert.equal((await health(n1)).servers_linked, 1);
  await a.close();
  await b.close();
});

/** Bob as a raw peer that signs its hello (so it can come back after a restart) and counts what it gets. */
async function rawBob(url: string): Promise<RawPeer> {
  const p = await RawPeer.open(url);
  const payload = {
    client: "raw",
    pubkey: bob.publicKey,
    enc_pubkey: bob.publicKey,
    ts: Date.now(),
    nonce: crypto.randomUUID(),
  };
  p.send({
    type: "USER_HELLO",
    from: BOB,
    to: "",
    ts: Date.now(),
    payload,
    sig: await signPayload(bob, payload),
  });
  await p.waitFor((f) => f.type === "ACK" && f.payload.msg_ref === "USER_HELLO", 10_000, "hello ACK");
  return p;
}

/** A scripted server joined to `n` with a signed JOIN (a federated peer that will replay what it saw). */
async function joinAs(n: NodeProcess, id: string): Promise<ScriptedConn> {
  const s = await dialAs(n.url, s2key);
  await s.send({
    type: "SERVER_HELLO_JOIN",
    from: id,
    to: `127.0.0.1:${n.port}`,
    payload: { host: "127.0.0.1", port: 1, pubkey: s2key.publicKey },
  });
  await s.waitFor((f) => f.type === "SERVER_WELCOME", "welcome");
  return s;
}

Deno.test({
  name: "replays: a SERVER_DELIVER reaches the user once (edited envelope, after a node restart, late)",
  ...opts,
}, async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-trust-replay-" });
  const sid = crypto.randomUUID();
  const sender = { id: "ca201000-0000-4000-8000-00000000c003", key: mallory };
  const count = (p: RawPeer, text: string) =>
    p.frames.filter((f) => f.type === "USER_DELIVER" && f.payload.content_sig === text).length;
  let captured: Record<string, unknown>;
  {
    await using n = await node([], dir, { SOCP_FRESHNESS_SECONDS: "20" });
    const b = await rawBob(n.url);
    const s = await joinAs(n, sid);
    captured = await s.send(await deliverFrom(sender, { id: BOB, pubkey: bob.publicKey }, "once", sid));
    const sig = (captured.payload as { content_sig: string }).content_sig;
    await b.waitFor((f) => f.type === "USER_DELIVER", 10_000, "the DM");
    // The envelope edited (ts + 1 ms, another `to`): the signed payload is the same frame.
    s.sendRaw({ ...captured, ts: (captured.ts as number) + 1, to: "*" });
    const marker = await s.send(
      await deliverFrom(sender, { id: BOB, pubkey: bob.publicKey }, "marker 1", sid),
    );
    const m1 = (marker.payload as { content_sig: string }).content_sig;
    await b.waitFor((f) => f.type === "USER_DELIVER" && f.payload.content_sig === m1, 10_000, "marker 1");
    assert.equal(count(b, sig), 1, "the edited copy was not delivered");
    s.close();
    b.close();
  }
  {
    // After a restart of the node, the verbatim frame again.
    await using n = await node([], dir, { SOCP_FRESHNESS_SECONDS: "20" });
    const b = await rawBob(n.url);
    const s = await joinAs(n, sid);
    s.sendRaw(captured);
    const marker = await s.send(
      await deliverFrom(sender, { id: BOB, pubkey: bob.publicKey }, "marker 2", sid),
    );
    const m2 = (marker.payload as { content_sig: string }).content_sig;
    await b.waitFor((f) => f.type === "USER_DELIVER" && f.payload.content_sig === m2, 10_000, "marker 2");
    assert.equal(
      count(b, (captured.payload as { content_sig: string }).content_sig),
      0,
      "not after a restart",
    );
    // Late: a frame signed long ago (its signed orig_ts outside the window) is refused, whatever its envelope.
    const old = await deliverFrom(sender, { id: BOB, pubkey: bob.publicKey }, "late", sid);
    old.payload.orig_ts = Date.now() - 60_000;
    const late = await s.send({ ...old, ts: Date.now() });
    const err = await s.waitFor((f) => f.type === "ERROR" && f.payload.code === "TIMEOUT", "TIMEOUT");
    assert.match(err.payload.detail, /^signed frame ts/);
    assert.equal(count(b, (late.payload as { content_sig: string }).content_sig), 0);
    s.close();
    b.close();
  }
});

Deno.test({
  name: "a channel version jump from a federated server is refused; later joins still announce sane versions",
  ...opts,
}, async () => {
  await using n = await node();
  const sid = crypto.randomUUID();
  const s = await joinAs(n, sid);
  const welcome = s.received.find((f) => f.type === "SERVER_WELCOME");
  const v0 = welcome.payload.public_channel.version as number;
  await s.send({
    type: "PUBLIC_CHANNEL_UPDATED",
    from: sid,
    to: "*",
    payload: { version: Number.MAX_SAFE_INTEGER, wraps: [] },
  });
  const a = await SocpClient.connect(n.url, { userId: ALICE, key: alice, reconnect: false });
  const add = await s.waitFor((f) => f.type === "PUBLIC_CHANNEL_ADD", "PUBLIC_CHANNEL_ADD for Alice");
  assert.ok(add.payload.if_version < v0 + 10, `if_version ${add.payload.if_version} stayed near ${v0}`);
  assert.ok(n.logs.some((l) => l.includes("channel.version_refused")));
  // A membership frame we cannot read is ignored, never a strike: the link stays up.
  for (let i = 0; i < 12; i++) {
    await s.send({
      type: "PUBLIC_CHANNEL_ADD",
      from: sid,
      to: "*",
      payload: { add: [ALICE], if_version: 2 ** 60 },
    });
  }
  await s.send({ type: "HEARTBEAT", from: sid, to: n.serverId, payload: {} });
  assert.equal((await health(n)).servers_linked, 1);
  assert.ok(s.open);
  await a.close();
  s.close();
});

Deno.test({
  name: "a bootstrap entry with a wrong key is a failed join that names both fingerprints, not a link",
  ...opts,
}, async () => {
  await using n1 = await node();
  await using n2 = await node(["--bootstrap", `127.0.0.1:${n1.port}#${mallory.publicKey}`]);
  const warn = await until(() => n2.logs.find((l) => l.includes("join.wrong_key")), "the WARN", 20_000);
  assert.match(warn, /expected="[0-9a-f]{4}( [0-9a-f]{4}){7}"/);
  assert.match(warn, /presented="[0-9a-f]{4}( [0-9a-f]{4}){7}"/);
  // n1 dials back the server that joined it; n2 refuses a server at its bootstrap entry's address with
  // another key than the entry's.
  await until(() => n2.logs.find((l) => l.includes("link.refused")), "n2 refuses n1's link", 20_000);
  assert.equal((await health(n2)).servers_linked, 0);
});
