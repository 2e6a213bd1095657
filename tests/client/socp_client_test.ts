/**
 * `SocpClient` against a real node (in memory, real sockets): it exists offline and queues what is written
 * before its first connection; it takes an injected crypto runner; it paces a file under the limits the node
 * announces; its `ack` events name the message.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient, WebCryptoRunner } from "../../lib/client/client.ts";
import { createNode } from "../../lib/net/create_node.ts";
import { fixtureChannelParts, fixtureKey } from "../helpers/keys.ts";
import { until } from "../helpers/until.ts";

const [nodeKey, aliceKey, bobKey] = await Promise.all(["user6", "user1", "user2"].map(fixtureKey));

async function node(limits = {}) {
  const n = await createNode({
    key: nodeKey,
    host: "127.0.0.1",
    port: 0,
    logLevel: "warn",
    limits,
    ...await fixtureChannelParts(),
  });
  return { url: `ws://127.0.0.1:${n.port}`, [Symbol.asyncDispose]: () => n.close() };
}

/** A client whose events are collected. */
function collect(c: SocpClient): ClientEvent[] {
  const events: ClientEvent[] = [...c.drainBuffered()];
  c.onEvent = (e) => events.push(e);
  return events;
}

Deno.test("created offline: what is written before the first connection arrives once; decryptions run on the injected runner", async () => {
  await using n = await node();
  let decrypts = 0;
  const bobRunner = new WebCryptoRunner(bobKey, {
    decrypt: (k, ct) => (decrypts++, k.decrypt(ct)),
  });
  const bob = await SocpClient.connect(n.url, {
    userId: crypto.randomUUID(),
    key: bobKey,
    displayName: "bob",
    crypto: bobRunner,
  });
  const bobEvents = collect(bob);
  const alice = await SocpClient.create(n.url, {
    userId: crypto.randomUUID(),
    key: aliceKey,
    displayName: "alice",
    contacts: [{ userId: bob.userId, name: "bob", pubkey: bobKey.publicKey, fingerprint: "", serverId: "" }],
  });
  try {
    const events = collect(alice);
    const early = await alice.tell("bob", "written offline");
    const post = await alice.all("posted offline");
    assert.equal(early.state, "sending");
    assert.equal(post.state, "sending");
    assert.equal(alice.connected, false);
    alice.start();
    await alice.whenReady();
    await until(() => bobEvents.some((e) => e.kind === "public"), "the public post at bob");
    await until(() => bobEvents.some((e) => e.kind === "dm"), "the DM at bob");
    await alice.tell("bob", "marker");
    await until(() => bobEvents.some((e) => e.kind === "dm" && e.text === "marker"), "the marker at bob");
    const texts = bobEvents.flatMap((e) => (e.kind === "dm" || e.kind === "public") ? [e.text] : []);
    assert.deepEqual(texts.sort(), ["marker", "posted offline", "written offline"]);
    assert.ok(decrypts >= 3, `decryptions on the injected runner: ${decrypts}`);
    assert.ok(events.some((e) => e.kind === "ready"));
  } finally {
    await alice.close();
    await bob.close();
  }
});

Deno.test("the node's limits reach the client; a burst of DMs and a file paced under a tight rate arrive whole", async () => {
  await using n = await node({ ratePerSec: 5, rateBurst: 4 });
  const alice = await SocpClient.connect(n.url, {
    userId: crypto.randomUUID(),
    key: aliceKey,
    displayName: "a",
  });
  const bob = await SocpClient.connect(n.url, { userId: crypto.randomUUID(), key: bobKey, displayName: "b" });
  try {
    const aliceEvents = collect(alice);
    const bobEvents = collect(bob);
    assert.equal(alice.core.limits.ratePerSec, 5);
    assert.equal(alice.core.limits.rateBurst, 4);
    await until(() => alice.directory.has(bob.userId), "bob in alice's directory");
    // Ten DMs built at once: their frames are ready together, more than the node's burst allows.
    await Promise.all([...Array(10).keys()].map((i) => alice.tell(bob.userId, `burst ${i}`)));
    await until(() => bobEvents.filter((e) => e.kind === "dm").length === 10, "the ten DMs at bob", 20_000);
    const data = new Uint8Array(16 * 446 * 8 + 5).map((_, i) => (i * 7919) % 251); // 9 chunks: more than twice the burst
    const sent: number[] = [];
    const fileId = await alice.sendFile(bob.userId, "paced.bin", data, (s) => sent.push(s));
    assert.equal(sent.at(-1), data.length);
    const got = await until(
      () => bobEvents.find((e) => e.kind === "file" && e.fileId === fileId),
      "the file at bob",
      30_000,
    );
    assert.ok(got.kind === "file" && got.bytes, got.kind === "file" ? got.problem : "");
    assert.deepEqual(got.kind === "file" && got.bytes, data);
    assert.deepEqual(aliceEvents.filter((e) => e.kind === "error"), [], "no rate-limit refusal");
    const ack = await until(
      () => aliceEvents.find((e) => e.kind === "ack" && e.fileId === fileId),
      "the ACK",
    );
    assert.ok(ack);
  } finally {
    await alice.close();
    await bob.close();
  }
});

Deno.test("a DM to a user queued offline is ACKed: the ack event names the message", async () => {
  await using n = await node();
  const bobId = crypto.randomUUID();
  // Bob registers, then leaves: DMs to him are queued and ACKed (PROFILE §10).
  const bob = await SocpClient.connect(n.url, { userId: bobId, key: bobKey, displayName: "bob" });
  await bob.close();
  const alice = await SocpClient.connect(n.url, {
    userId: crypto.randomUUID(),
    key: aliceKey,
    contacts: [{ userId: bobId, name: "bob", pubkey: bobKey.publicKey, fingerprint: "", serverId: "" }],
  });
  try {
    const events = collect(alice);
    const m = await alice.tell("bob", "while you were away");
    const ack = await until(() => events.find((e) => e.kind === "ack"), "the ACK");
    assert.ok(ack.kind === "ack");
    assert.equal(ack.messageId, m.id);
    assert.equal(alice.core.message(m.id)!.state, "accepted");
  } finally {
    await alice.close();
  }
});
