/**
 * PROFILE §15 "Hello and advert field names" and "Original timestamps elsewhere in the payload" (issue 17):
 * - a USER_HELLO with its key in `payload.pubkey_b64u` is accepted by our node (and its signature checked);
 * - our client reads USER_ADVERTISE `{user, name, pubkey_b64u, via?}` (an advert with `user == from` is the server
 *   itself, not a user), USER_REMOVE `{user}`, and USER_DELIVER `payload.original_ts` (the DM verifies);
 * - our node reads SERVER_DELIVER `payload.cts` like `orig_ts` (the DM verifies at our client), and every
 *   SERVER_DELIVER it originates carries `cts` as well as `orig_ts`.
 */
import assert from "node:assert/strict";
import { encryptTo } from "../../lib/crypto/rsa.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { ScriptedServer, signPayload, userAdvert } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";
import {
  connectOurs,
  deliverFrom,
  joiningNode,
  linked,
  opts,
  ours,
  readDeliver,
  serverKey as srvKey,
  TIMERS,
  watch,
  zed,
  zoe,
} from "./common.ts";

const P = "py-3c9d2e1f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
const enc = new TextEncoder();

Deno.test({ name: "our node accepts a USER_HELLO whose key is in pubkey_b64u", ...opts }, async () => {
  await using node = await NodeProcess.start({ args: TIMERS });
  using peer = await RawPeer.open(node.url);
  const payload = { client: "py-client", pubkey_b64u: zoe.key.publicKey, ts: Date.now() };
  const forged = { ...payload, ts: payload.ts + 1 };
  // First a hello whose signature does not cover what it says: refused, the variant relaxes nothing.
  {
    using bad = await RawPeer.open(node.url);
    bad.send({
      type: "USER_HELLO",
      from: zoe.id,
      to: "*",
      ts: Date.now(),
      payload: forged,
      sig: await signPayload(zoe.key, payload),
    });
    const refusal = await bad.error("INVALID_SIG");
    assert.match(refusal.payload.detail, /USER_HELLO/);
  }
  peer.send({
    type: "USER_HELLO",
    from: zoe.id,
    to: "*",
    ts: Date.now(),
    payload,
    sig: await signPayload(zoe.key, payload),
  });
  const ack = await peer.waitFor((f) => f.type === "ACK" || f.type === "ERROR", 5000, "the hello's answer");
  assert.equal(ack.type, "ACK", JSON.stringify(ack.payload));
  await using client = await connectOurs(node.url);
  await until(() => client.directory.get(zoe.id), "zoe (pubkey_b64u) in our directory");
  assert.equal(client.directory.get(zoe.id)?.pubkey, zoe.key.publicKey);
});

Deno.test(
  { name: "our client reads {user, name, pubkey_b64u, via} adverts and original_ts", ...opts },
  async () => {
    await using srv = ScriptedServer.start({
      key: srvKey,
      onFrame: async (f, conn) => {
        if (f.type !== "USER_HELLO") return;
        await conn.send({
          type: "ACK",
          from: P,
          to: f.from,
          payload: { msg_ref: "USER_HELLO", server_id: P, server_pub: srvKey.publicKey },
        });
        // The server describing itself, then two users: one at home here, one via another server.
        await conn.send({
          type: "USER_ADVERTISE",
          from: P,
          to: "*",
          payload: { user: P, name: "py server", pubkey_b64u: srvKey.publicKey },
        });
        await conn.send({
          type: "USER_ADVERTISE",
          from: P,
          to: "*",
          payload: { user: zed.id, name: "zed", pubkey_b64u: zed.key.publicKey },
        });
        await conn.send({
          type: "USER_ADVERTISE",
          from: P,
          to: "*",
          payload: { user: zoe.id, name: "zoe", pubkey_b64u: zoe.key.publicKey, via: "other-server" },
        });
      },
    });
    await using client = await connectOurs(`ws://127.0.0.1:${srv.port}`, { reconnect: false });
    const got = watch(client);
    const conn = srv.conns[0];
    await until(() => client.directory.has(zoe.id), "zoe in the directory");
    assert.equal(client.directory.get(zed.id)?.name, "zed");
    assert.equal(client.directory.get(zed.id)?.serverId, P);
    assert.equal(client.directory.get(zed.id)?.pubkey, zed.key.publicKey);
    assert.equal(client.directory.get(zoe.id)?.serverId, "other-server");
    assert.ok(!client.directory.has(P), "an advert with user == from is the server, not a user");

    // A DM stamped with its delivery time, the original in payload.original_ts: verified over the original.
    const orig = Date.now() - 90_000;
    const ciphertext = await encryptTo(ours.key.publicKey, enc.encode("sent a while ago"));
    const content_sig = await zed.key.sign(enc.encode(ciphertext + zed.id + ours.id + orig));
    await conn.send({
      type: "USER_DELIVER",
      from: P,
      to: ours.id,
      payload: {
        ciphertext,
        sender: zed.id,
        sender_pub: zed.key.publicKey,
        content_sig,
        original_ts: orig,
      },
    });
    const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM");
    assert.ok(dm.kind === "dm" && dm.text === "sent a while ago");
    assert.ok(dm.verified, "content_sig verified over payload.original_ts");

    // USER_REMOVE {user}.
    await conn.send({ type: "USER_REMOVE", from: P, to: "*", payload: { user: zed.id } });
    await until(() => !client.directory.has(zed.id), "zed gone after USER_REMOVE {user}");
    assert.ok(client.directory.has(zoe.id));
  },
);

Deno.test({ name: "our node reads SERVER_DELIVER cts and sends cts with orig_ts", ...opts }, async () => {
  await using intro = ScriptedServer.start({
    key: srvKey,
    onFrame: async (f, conn, server) => {
      if (f.type !== "SERVER_HELLO_JOIN") return;
      await conn.send({
        type: "SERVER_WELCOME",
        from: P,
        to: f.from,
        payload: { server_id: P, server_pub: srvKey.publicKey, host: "127.0.0.1", port: server.port },
      });
      await conn.send(userAdvert(zed, "zed", P));
    },
  });
  await using node = await joiningNode(intro.port);
  await linked(node, 1);
  const link = intro.conns[0];
  await using client = await connectOurs(node.url);
  const got = watch(client);
  await until(() => client.directory.has(zed.id), "zed online");
  await client.tell(zed.id, "with cts");
  const sd = await link.waitFor((f) => f.type === "SERVER_DELIVER", "our SERVER_DELIVER");
  assert.equal(await readDeliver(zed.key, sd), "with cts");
  assert.equal(sd.payload.cts, sd.ts, "cts = the original ts");
  assert.equal(sd.payload.orig_ts, sd.ts);

  // Theirs: the original time only in payload.cts, the envelope stamped a minute later (a queued DM).
  const d = await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "queued a minute", P);
  const cts = d.ts;
  await link.send({ ...d, ts: cts + 60_000, payload: { ...d.payload, cts } });
  const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM");
  assert.ok(dm.kind === "dm" && dm.text === "queued a minute");
  assert.ok(dm.verified, "the USER_DELIVER kept the original ts from cts, so content_sig verifies");
});
