/**
 * End-to-end: the real `socp serve` process on a free loopback port, driven by WebSocket clients.
 */
import assert from "node:assert/strict";
import { type ClientEvent, HelloRefused, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until as waitUntil } from "../helpers/until.ts";
import { type Frame, RawPeer } from "../helpers/ws_peer.ts";

const until = <T>(f: Parameters<typeof waitUntil<T>>[0], what: string, ms = 5000) => waitUntil(f, what, ms);
const opts = { sanitizeOps: false, sanitizeResources: false };
const ALICE = "a11ce000-0000-4000-8000-00000000e2e1";
const BOB = "b0b00000-0000-4000-8000-00000000e2e2";
const CAROL = "ca201000-0000-4000-8000-00000000e2e3";
const DAVE = "da4e0000-0000-4000-8000-00000000e2e4";

function events(c: SocpClient): ClientEvent[] {
  const got: ClientEvent[] = [...c.drainBuffered()];
  c.onEvent = (e) => got.push(e);
  return got;
}

async function rawHello(url: string, user: string, pubkey: string): Promise<RawPeer> {
  const p = await RawPeer.open(url);
  p.send({
    type: "USER_HELLO",
    from: user,
    to: "",
    ts: Date.now(),
    payload: { client: "raw", pubkey, enc_pubkey: pubkey },
    sig: "",
  });
  return p;
}

/** This test's own node, on an identity made from a fixture key; stopped when the test's scope ends. */
const ownNode = async () => await NodeProcess.start();
const k1 = await fixtureKey("user1");
const k2 = await fixtureKey("user2");
const k3 = await fixtureKey("user3");

Deno.test({ name: "two users exchange DMs both ways, and each verifies what arrives", ...opts }, async () => {
  await using node = await ownNode();
  const alice = await SocpClient.connect(node.url, { userId: ALICE, key: k1, displayName: "alice" });
  const bob = await SocpClient.connect(node.url, { userId: BOB, key: k2, displayName: "bob" });
  const ae = events(alice);
  const be = events(bob);
  await until(() => alice.directory.get(BOB), "alice sees bob");
  assert.equal(alice.serverId, node.serverId);
  assert.deepEqual(bob.list().map((p) => p.name), ["alice", "bob"]);
  assert.ok(bob.directory.get(ALICE)!.verified, "advert signed by the server");

  await alice.tell("bob", "hello bob, ünïcode ✓");
  await bob.tell(ALICE, "hi alice " + "long ".repeat(200)); // > 446 bytes: multi-block OAEP
  const toBob = await until(() => be.find((e) => e.kind === "dm"), "bob's DM");
  const toAlice = await until(() => ae.find((e) => e.kind === "dm"), "alice's DM");
  assert.deepEqual([toBob.kind === "dm" && toBob.text, toBob.kind === "dm" && toBob.verified], [
    "hello bob, ünïcode ✓",
    true,
  ]);
  assert.ok(toAlice.kind === "dm" && toAlice.verified && toAlice.text.startsWith("hi alice long"));
  assert.equal(toAlice.kind === "dm" && toAlice.fromName, "bob");

  bob.close();
  await until(() => ae.find((e) => e.kind === "left"), "alice sees bob leave");
  assert.ok(!alice.directory.has(BOB));
  alice.close();
});

Deno.test({
  name:
    "a second signed session of an online user takes over; the first is told in words and does not return",
  ...opts,
}, async () => {
  await using node = await ownNode();
  const first = await SocpClient.connect(node.url, { userId: CAROL, key: k3 });
  const seen = first.drainBuffered();
  first.onEvent = (e) => seen.push(e);
  const second = await SocpClient.connect(node.url, { userId: CAROL, key: k3 });
  const refused = await until(() => seen.find((e) => e.kind === "refused"), "the first session is told");
  assert.ok(refused.kind === "refused" && /signed in elsewhere/.test(refused.detail));
  assert.ok(second.connected);
  // An unsigned hello for the same (registered) id proves nothing: refused, the session stays.
  const raw = await RawPeer.open(node.url);
  raw.send({
    type: "USER_HELLO",
    from: CAROL,
    to: "",
    ts: Date.now(),
    payload: { client: "raw", pubkey: k3.publicKey },
    sig: "",
  });
  assert.equal((await raw.error("INVALID_SIG")).payload.code, "INVALID_SIG");
  assert.ok(second.connected);
  raw.close();
  first.close();
  second.close();
});

Deno.test({ name: "a 2048-bit key gets BAD_KEY", ...opts }, async () => {
  await using node = await ownNode();
  const weak = await fixtureKey("rsa2048");
  await assert.rejects(
    () => SocpClient.connect(node.url, { userId: crypto.randomUUID(), key: weak }),
    (e) => e instanceof HelloRefused && e.code === "BAD_KEY" && /2048-bit/.test(e.message),
  );
});

Deno.test({ name: "a hello signed with another key gets INVALID_SIG", ...opts }, async () => {
  await using node = await ownNode();
  const p = await RawPeer.open(node.url);
  const payload = { client: "raw", enc_pubkey: k1.publicKey, pubkey: k1.publicKey };
  const sig = await k2.sign(new TextEncoder().encode(JSON.stringify(payload)));
  p.send({ type: "USER_HELLO", from: crypto.randomUUID(), to: "", ts: Date.now(), payload, sig });
  await p.error("INVALID_SIG");
  p.close();
});

Deno.test(
  { name: "unknown type, malformed JSON, and an unknown recipient each get their error", ...opts },
  async () => {
    await using node = await ownNode();
    const user = crypto.randomUUID();
    const p = await rawHello(node.url, user, (await fixtureKey("user4")).publicKey);
    await p.waitFor((f) => f.type === "ACK");
    p.send({ type: "WHO_IS_THERE", from: user, to: "x", ts: Date.now(), payload: {} });
    assert.match((await p.error("UNKNOWN_TYPE")).payload.detail, /unknown message type "WHO_IS_THERE"/);
    p.send("{this is not json");
    assert.match((await p.error("UNKNOWN_TYPE")).payload.detail, /malformed JSON/);
    p.send({
      type: "MSG_DIRECT",
      from: user,
      to: DAVE,
      ts: Date.now(),
      payload: { ciphertext: "AA", sender_pub: "x", content_sig: "AA" },
    });
    const nf: Frame = await p.error("USER_NOT_FOUND");
    assert.equal(nf.from, node.serverId);
    assert.ok(nf.sig.length > 600, "errors are signed by the server");
    p.close();
  },
);

Deno.test({ name: "a replayed frame is delivered once; a spoofed `from` is refused", ...opts }, async () => {
  await using node = await ownNode();
  const u1 = crypto.randomUUID();
  const u2 = crypto.randomUUID();
  const a = await rawHello(node.url, u1, (await fixtureKey("user5")).publicKey);
  const b = await rawHello(node.url, u2, (await fixtureKey("user6")).publicKey);
  await a.waitFor((f) => f.type === "ACK");
  await b.waitFor((f) => f.type === "ACK");
  const dm = {
    type: "MSG_DIRECT",
    from: u1,
    to: u2,
    ts: Date.now(),
    payload: { ciphertext: "AAAA", sender_pub: "k", content_sig: "s" },
    sig: "",
  };
  a.send(dm);
  a.send(dm);
  a.send({ ...dm, from: u2, ts: dm.ts + 1 }); // spoofed: claims to be b
  await a.error("INVALID_SIG");
  // A later DM on the same connection: the node handles a connection's frames in arrival order and writes to b
  // in order, so once it reaches b, a second copy of the first would have too.
  a.send({ ...dm, ts: dm.ts + 2, payload: { ...dm.payload, ciphertext: "BBBB" } });
  await b.waitFor((f) => f.type === "USER_DELIVER" && f.payload.ciphertext === "BBBB");
  assert.equal(
    b.frames.filter((f) => f.type === "USER_DELIVER" && f.payload.ciphertext === "AAAA").length,
    1,
  );
  const d = b.frames.find((f) => f.type === "USER_DELIVER");
  assert.equal(d.ts, dm.ts, "original ts kept");
  assert.equal(d.payload.sender, u1);
  a.close();
  b.close();
});

Deno.test({ name: "a frame over 256 KiB closes the socket with 1009", ...opts }, async () => {
  await using node = await ownNode();
  const p = await RawPeer.open(node.url);
  p.send("x".repeat(256 * 1024 + 1));
  assert.equal((await p.closed).code, 1009);
});

Deno.test({ name: "HTTP: /.well-known/socp, /healthz, /metrics and the status page", ...opts }, async () => {
  await using node = await ownNode();
  const wk = await (await fetch(`${node.http}/.well-known/socp`)).json();
  assert.equal(wk.tls, false);
  assert.equal(wk.url, `ws://127.0.0.1:${node.port}`);
  assert.deepEqual(Object.keys(wk).sort(), [
    "bootstrap",
    "lab_modes",
    "protocol",
    "pubkey",
    "server_id",
    "software",
    "tls",
    "url",
  ]);
  assert.equal(wk.protocol, "SOCP/1.3");
  assert.equal(wk.server_id, node.serverId);
  assert.deepEqual(wk.lab_modes, []);
  // The exact entry another server pastes: plain host:port#PUBKEY (this node serves no TLS).
  assert.equal(wk.bootstrap, `127.0.0.1:${node.port}#${wk.pubkey}`);
  const hz = await (await fetch(`${node.http}/healthz`)).json();
  assert.equal(hz.status, "ok");
  assert.equal(typeof hz.users_online, "number");
  const m = await (await fetch(`${node.http}/metrics`)).text();
  assert.match(m, /^socp_frames_in_total \d+$/m);
  const page = await (await fetch(`${node.http}/`)).text();
  assert.ok(page.includes(node.serverId) && page.includes("deno task chat --server"));
  assert.equal((await fetch(`${node.http}/nope`)).status, 404);
  await (await fetch(`${node.http}/nope`)).body?.cancel();
});

Deno.test({ name: "the log shows events without secrets", ...opts }, async () => {
  await using node = await ownNode();
  const p = await rawHello(node.url, crypto.randomUUID(), k1.publicKey);
  await p.waitFor((f) => f.type === "ACK", 10_000, "ACK");
  p.close();
  await p.closed;
  const all = node.logs.join("\n");
  assert.match(all, /INFO user\.joined user=/);
  // The random key that seals the identity key (after the file's "socp-random-key-v1:" prefix).
  const secret = Deno.readTextFileSync(`${node.dataDir}/node.secret`).trim().split(":").pop()!;
  assert.ok(secret.length >= 43, "the key part of node.secret");
  assert.ok(secret.length >= 40);
  assert.ok(!all.includes(secret), "the node secret is never logged");
  assert.ok(!all.includes("PRIVATE KEY") && !all.includes("sealed"), "no key material is logged");
});

Deno.test(
  { name: "a restart after SIGKILL keeps the server id, the key and the user bindings", ...opts },
  async () => {
    await using n1 = await NodeProcess.start();
    const wk1 = await (await fetch(`${n1.http}/.well-known/socp`)).json();
    const user = crypto.randomUUID();
    const c = await SocpClient.connect(n1.url, { userId: user, key: k1 });
    c.close();
    await n1.kill("SIGKILL");
    await using n2 = await NodeProcess.start({ dataDir: n1.dataDir });
    const wk2 = await (await fetch(`${n2.http}/.well-known/socp`)).json();
    assert.equal(wk2.server_id, wk1.server_id);
    assert.equal(wk2.pubkey, wk1.pubkey);
    await assert.rejects(
      () => SocpClient.connect(n2.url, { userId: user, key: k2 }),
      (e) => e instanceof HelloRefused && e.code === "BAD_KEY",
    );
    const again = await SocpClient.connect(n2.url, { userId: user, key: k1 });
    again.close();
  },
);

Deno.test(
  { name: "a flood of signed frames is bounded: limits hold, the node stays responsive", ...opts },
  async () => {
    await using node = await ownNode();
    const flooder = crypto.randomUUID();
    const key = await fixtureKey("user5");
    const p = await rawHello(node.url, flooder, key.publicKey);
    await p.waitFor((f) => f.type === "ACK");
    // 500 distinct signed payloads, each sent 6 times: every frame costs a verification, and (PROFILE §16) a
    // repeated payload is a replay whatever its ts, so the node does the routing work for each payload once.
    const signed = await Promise.all(Array.from({ length: 500 }, async (_, i) => {
      const payload = {
        ciphertext: `AAAA${String(i).padStart(4, "0")}`,
        sender_pub: key.publicKey,
        content_sig: "AAAA",
      };
      return { payload, sig: await key.sign(new TextEncoder().encode(JSON.stringify(payload))) }; // keys sorted
    }));
    const t0 = Date.now();
    for (let i = 0; i < 3000; i++) {
      const { payload, sig } = signed[i % signed.length];
      p.send({ type: "MSG_DIRECT", from: flooder, to: DAVE, ts: t0 + i, payload, sig });
    }
    const h0 = performance.now();
    const hz = await (await fetch(`${node.http}/healthz`)).json();
    const healthMs = performance.now() - h0;
    assert.equal(hz.status, "ok");
    // The node has worked through what it took once it answers a later probe (a connection's frames are handled
    // and answered in arrival order), or once it has closed the socket. A probe may itself be dropped by the rate
    // limit, so a new one (a fresh payload to a new unknown user) goes every 300 ms until one is answered.
    let closedCode = 0;
    p.closed.then((c) => closedCode = c.code);
    const probes: string[] = [];
    let nextProbe = 0;
    await until(
      async () => {
        if (closedCode) return true;
        const answered = (id: string) =>
          p.frames.some((f) => f.type === "ERROR" && f.payload.detail?.includes(id));
        if (probes.some(answered)) return true;
        if (Date.now() < nextProbe) return false;
        nextProbe = Date.now() + 300;
        const to = crypto.randomUUID();
        const payload = {
          ciphertext: `PROBE${probes.length}`,
          sender_pub: key.publicKey,
          content_sig: "AAAA",
        };
        const sig = await key.sign(new TextEncoder().encode(JSON.stringify(payload)));
        probes.push(to);
        p.send({ type: "MSG_DIRECT", from: flooder, to, ts: Date.now(), payload, sig });
      },
      "the node answers a probe after the flood, or closes the socket",
      180_000,
    ).catch((e) => {
      const errors = p.frames.filter((f) => f.type === "ERROR").map((f) => f.payload.detail.slice(0, 60));
      throw new Error(
        `${e.message}: ${probes.length} probes, ${p.frames.length} frames back, last errors ${
          JSON.stringify(errors.slice(-3))
        }\n${node.logs.slice(-10).join("\n")}`,
      );
    });
    const secs = (Date.now() - t0) / 1000;
    // Each frame the node processed answers USER_NOT_FOUND (DAVE is unknown): that is the work it accepted.
    const processed =
      p.frames.filter((f) =>
        f.type === "ERROR" && f.payload.code === "USER_NOT_FOUND" && f.payload.detail.includes(DAVE)
      ).length;
    const limit = 400 + 100 * secs;
    assert.ok(
      processed <= limit,
      `processed ${processed} frames in ${secs.toFixed(1)} s; the token bucket allows ${limit.toFixed(0)}`,
    );
    const told = p.frames.some((f) => f.type === "ERROR" && /rate limit|in flight/.test(f.payload.detail));
    assert.ok(told || closedCode === 1008, "the flooder was told it is over its limit, or cut off");
    // Others are still served.
    const a = await SocpClient.connect(node.url, { userId: crypto.randomUUID(), key: k1 });
    a.close();
    p.close();
    console.log(
      `  flood: ${processed} of 3000 frames processed in ${secs.toFixed(1)} s; /healthz answered in ${
        healthMs.toFixed(0)
      } ms`,
    );
  },
);

Deno.test(
  { name: "a DM sent just before the sender's socket closes still reaches its recipient", ...opts },
  async () => {
    await using node = await ownNode();
    const ERIN = "e2140000-0000-4000-8000-00000000e2e5";
    const FRANK = "f2a40000-0000-4000-8000-00000000e2e6";
    const erin = await SocpClient.connect(node.url, { userId: ERIN, key: k3, displayName: "erin" });
    const frank = await SocpClient.connect(node.url, { userId: FRANK, key: k1, displayName: "frank" });
    const fe = events(frank);
    try {
      await until(() => erin.directory.get(FRANK), "erin sees frank");
      // The socket closes right after the DM is written (no CTRL_CLOSE handshake, which waits for the server): the
      // node receives the frame and then the peer's close while the frame is still being verified.
      // DMs are held back and written together, followed at once by the close.
      const texts = Array.from({ length: 8 }, (_, i) => `sent ${i}, then the socket closed`);
      // The client's socket and its stop (reaching inside SocpClient: no public way to close without CTRL_CLOSE).
      const inner = erin as unknown as { link: { ws: WebSocket }; shutdown(): void };
      const ws = inner.link.ws;
      const send = ws.send.bind(ws);
      const held: string[] = [];
      ws.send = (d) => {
        if (typeof d !== "string" || !d.includes('"MSG_DIRECT"')) return send(d);
        held.push(d);
        if (held.length < texts.length) return;
        for (const h of held) send(h);
        inner.shutdown(); // closes the socket at once; no reconnect that would send them again
      };
      await Promise.all(texts.map((t) => erin.tell(FRANK, t)));
      const dms = () => fe.flatMap((e) => e.kind === "dm" && e.verified ? [e.text] : []);
      await until(() => dms().length === texts.length, "all of frank's DMs", 10_000).catch(() => {});
      assert.deepEqual(dms().sort(), [...texts].sort());
    } finally {
      await erin.close();
      await frank.close();
    }
  },
);

Deno.test({ name: "SIGTERM is a clean shutdown", ...opts }, async () => {
  await using node = await ownNode();
  // A request answered after "node.listening" was logged: by then the command has its signal handlers (they are
  // set as soon as startNode returns, before the node's next turn).
  assert.equal((await (await fetch(`${node.http}/healthz`)).json()).status, "ok");
  const status = await node.kill("SIGTERM");
  assert.equal(status.code, 0, "SIGTERM is a clean shutdown");
});

Deno.test({
  name: "lab modes are announced in /healthz, /.well-known/socp and the log, and do what they say",
  ...opts,
}, async () => {
  await using lab = await NodeProcess.start({ env: { SOCP_LAB_REPLAY: "1", SOCP_LAB_WEAK_KEYS: "1" } });
  const hz = await (await fetch(`${lab.http}/healthz`)).json();
  assert.deepEqual(hz.lab_modes, ["weak-keys", "replay"]);
  const wk = await (await fetch(`${lab.http}/.well-known/socp`)).json();
  assert.deepEqual(wk.lab_modes, ["weak-keys", "replay"]);
  assert.ok(lab.logs.some((l) => /WARN lab_mode\.on modes=weak-keys,replay/.test(l)));
  // weak keys accepted; a replayed frame is delivered twice.
  const weak = await fixtureKey("rsa1024");
  const u1 = crypto.randomUUID();
  const u2 = crypto.randomUUID();
  const a = await rawHello(lab.url, u1, weak.publicKey);
  const b = await rawHello(lab.url, u2, k2.publicKey);
  await a.waitFor((f) => f.type === "ACK");
  await b.waitFor((f) => f.type === "ACK");
  const dm = {
    type: "MSG_DIRECT",
    from: u1,
    to: u2,
    ts: Date.now() - 3_600_000,
    payload: { ciphertext: "AAAA", sender_pub: "k", content_sig: "s" },
  };
  a.send(dm);
  a.send(dm);
  await until(() => b.count("USER_DELIVER") === 2 ? true : undefined, "two deliveries");
  a.close();
  b.close();
});
