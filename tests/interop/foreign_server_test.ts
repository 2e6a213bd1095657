/**
 * Our real node linked to a scripted server that behaves like the deployed ones of issue 8, all at once:
 * - it relays every frame to every link, so our own frames come back (item 3);
 * - it sends `PUBLIC_CHANNEL_UPDATED {version, added}` and KEY_SHARE entries with `wrapped` (item 4);
 * - `SERVER_ANNOUNCE {server_id, user_locations}` without an address (item 5);
 * - it keeps links alive with WebSocket pings only, never HEARTBEAT (item 8);
 * - it accepts only SERVER_HELLO_JOIN and answers a LINK with ERROR and a close (item 9);
 * - it never ACKs, and its /.well-known/socp names other software (item 10);
 * - it signs its frames as `from:"key1"` and `"server"` (item 11).
 * The user-visible outcome: the link comes up and stays up, presence on both sides, DMs once each way (an offline
 * one too, never resent), no ERROR and no strike from our node, a flap heals with one LINK and one JOIN, and the
 * idle link carries a flat trickle of heartbeats (ours and their echoes), printed per minute.
 */
import assert from "node:assert/strict";
import { type ScriptedConn, ScriptedServer, userAdvert } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import type { Frame } from "../helpers/ws_peer.ts";
import {
  concurrent,
  connectOurs,
  deliverFrom,
  heartbeatRounds,
  joiningNode,
  linked,
  noRefusals,
  ours,
  quietLink,
  readDeliver,
  serverKey as fKey,
  type User,
  watch,
  zed,
  zoe,
} from "./common.ts";

const F = "f0e1d2c3-b4a5-4968-8776-655443322110";
const HELLOS = new Set(["SERVER_HELLO_JOIN", "SERVER_HELLO_LINK", "SERVER_ANNOUNCE"]);

/** An advert of `u` at F, signed as `key1` (item 11). */
const advert = (u: User, name: string): Frame => userAdvert(u, name, F, "key1");

function foreignServer(): ScriptedServer {
  const server: ScriptedServer = ScriptedServer.start({
    key: fKey,
    pingSeconds: 1,
    wellKnown: { server_id: F, pubkey: fKey.publicKey, software: "pysocp/1.3" },
    onConnection: (conn) => {
      let linked = false;
      conn.onFrame = async (f: Frame, c: ScriptedConn) => {
        if (f.type === "SERVER_HELLO_LINK") {
          c.sendRaw({
            type: "ERROR",
            from: "server",
            to: f.from,
            ts: Date.now(),
            payload: { code: "UNKNOWN_TYPE", detail: "Unexpected initial message: SERVER_HELLO_LINK" },
            sig: "",
          });
          return c.close(1008, "Unexpected initial message: SERVER_HELLO_LINK");
        }
        if (f.type === "SERVER_HELLO_JOIN" && !linked) {
          linked = true;
          await c.send({
            type: "SERVER_WELCOME",
            from: F,
            to: f.from,
            payload: { host: "127.0.0.1", port: server.port, pubkey: fKey.publicKey, role: "peer" },
          });
          await c.send(advert(zed, "zed"));
          await c.send({
            type: "PUBLIC_CHANNEL_UPDATED",
            from: "key1",
            to: "*",
            payload: { version: 2, added: [zed.id] },
          });
          await c.send({
            type: "PUBLIC_CHANNEL_KEY_SHARE",
            from: "key1",
            to: "*",
            payload: {
              shares: [{ member: zed.id, wrapped: "AAAA" }],
              creator_pub: fKey.publicKey,
              content_sig: "",
            },
          });
          await c.send({
            type: "SERVER_ANNOUNCE",
            from: "server",
            to: "*",
            payload: { server_id: F, user_locations: { [zed.id]: F } },
          });
          return;
        }
        // Every other frame goes back out on every link, the sender's included.
        if (linked && !HELLOS.has(f.type)) { for (const o of server.conns) o.sendRaw(f); }
      };
    },
  });
  return server;
}

/** Our node and a server speaking every deployed dialect at once (see the module doc). */
async function everyDialect(): Promise<void> {
  await using fs = foreignServer();
  await using node = await joiningNode(fs.port);
  await linked(node, 1);
  const first: ScriptedConn = fs.conns[0];
  assert.equal(first.received[0].type, "SERVER_HELLO_JOIN");
  await until(() => fs.httpRequests.includes("/.well-known/socp"), "our node reads /.well-known/socp");

  // Presence both ways; our advert comes back to us (echo) and is dropped quietly.
  await using client = await connectOurs(node.url);
  const got = watch(client);
  await first.waitFor((f) => f.type === "USER_ADVERTISE" && f.payload.user_id === ours.id, "our advert");
  await until(() => client.directory.has(zed.id), "zed (advertised as key1) in our directory");

  // DMs both ways, once.
  await client.tell(zed.id, "hi zed");
  const sd = await first.waitFor((f) => f.type === "SERVER_DELIVER" && f.from === node.serverId, "our DM");
  assert.equal(await readDeliver(zed.key, sd), "hi zed");
  assert.equal(sd.payload.orig_ts, sd.ts);
  await first.send(await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "hi ours", "key1"));
  const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM (signed as key1)");
  assert.ok(dm.kind === "dm" && dm.text === "hi ours" && dm.verified);

  // Zoe was online and left: a DM to her is handed to the live link (no ACK extension), and never resent.
  await first.send(advert(zoe, "zoe"));
  await until(() => client.directory.has(zoe.id), "zoe online");
  await first.send({
    type: "USER_REMOVE",
    from: "key1",
    to: "*",
    payload: { user_id: zoe.id, server_id: F },
  });
  await until(() => !client.directory.has(zoe.id), "zoe gone");
  await client.tell(zoe.id, "for later");
  const toZoe = (f: Frame) => f.type === "SERVER_DELIVER" && f.payload.user_id === zoe.id;
  const held = await first.waitFor(toZoe, "the DM for zoe");
  assert.equal(held.payload.ack, undefined, "pysocp did not say socp/…: no payload.ack");
  assert.equal(await readDeliver(zoe.key, held), "for later");
  await until(() => got.find((e) => e.kind === "ack"), "our server's ACK: the DM was accepted");

  // A flap: the foreign server drops the link. Our LINK is refused; we come back with JOIN.
  first.close(1001, "going away");
  await until(() => fs.conns.length >= 3 && fs.conns[2].open, "a JOIN after the refused LINK", 15_000);
  await linked(node, 1);
  const hellos = fs.conns.slice(1).map((c) => c.received[0]?.type);
  assert.deepEqual(hellos, ["SERVER_HELLO_LINK", "SERVER_HELLO_JOIN"], "one LINK, then JOIN: no storm");
  const relink = fs.conns[2];
  // A DM sent now follows anything the node would resend on the new link (stored rows go out when a link comes
  // up, before later traffic): once it is here, a resent DM for zoe would be too.
  await client.tell(zed.id, "after the flap");
  const toZed = (f: Frame) => f.type === "SERVER_DELIVER" && f.payload.user_id === zed.id;
  const probe = await relink.waitFor(toZed, "the DM after the flap");
  assert.equal(await readDeliver(zed.key, probe), "after the flap");
  const all = fs.conns.flatMap((c) => c.received);
  assert.equal(all.filter(toZoe).length, 1, "the DM for zoe was sent once, not resent after the flap");
  assert.equal(all.filter(toZed).length, 2, "each DM for zed sent once");
  assert.equal(got.filter((e) => e.kind === "dm").length, 1);

  // Idle: heartbeats only (ours and their echoes), flat, and the link outlives several link timeouts.
  await quietLink("foreign server (echoes, key1, pings only, JOIN only, no ACK)", relink, 6, 500);
  assert.equal(fs.conns.length, 3, "no redial while idle");
  assert.ok(relink.open);
  noRefusals(node, fs.conns, "foreign server"); // an ERROR is never answered with an ERROR either
}

/** A server that closes at once on SERVER_HELLO_LINK is re-linked with JOIN, no storm. */
async function instantCloseOnLink(): Promise<void> {
  await using server = ScriptedServer.start({
    key: fKey,
    pingSeconds: 1,
    onFrame: async (f, c) => {
      if (f.type === "SERVER_HELLO_LINK") {
        return c.close(1008, "Unexpected initial message: SERVER_HELLO_LINK");
      }
      if (f.type === "SERVER_HELLO_JOIN") {
        await c.send({
          type: "SERVER_WELCOME",
          from: F,
          to: f.from,
          payload: { server_id: F, pubkey: fKey.publicKey },
        });
      }
    },
  });
  await using node = await joiningNode(server.port);
  await linked(node, 1);
  server.conns[0].close(1001, "going away");
  await until(
    () => server.conns.length >= 3 && server.conns[2].received.length > 0,
    "a JOIN after the closed LINK",
  );
  await linked(node, 1);
  // Three link timeouts of the node's own clock (12 of its 0.5 s heartbeats): the re-linked connection holds,
  // nothing is redialed.
  await heartbeatRounds(server.conns[2], 12, "instant close on LINK");
  const hellos = server.conns.map((c) => c.received[0]?.type);
  console.log(`[interop] instant close on LINK: hellos seen ${JSON.stringify(hellos)}`);
  assert.deepEqual(hellos, ["SERVER_HELLO_JOIN", "SERVER_HELLO_LINK", "SERVER_HELLO_JOIN"]);
  assert.ok(server.conns[2].open);
  noRefusals(node, server.conns, "instant close on LINK");
}

Deno.test({ name: "our node and foreign servers", ...concurrent }, async (t) => {
  // Each ends counting twelve of its node's heartbeats on a quiet link: two nodes, at the same time.
  await Promise.all([
    t.step({ name: "a server speaking every deployed dialect at once", ...concurrent, fn: everyDialect }),
    t.step({
      name: "a server that closes at once on SERVER_HELLO_LINK is re-linked with JOIN, no storm",
      ...concurrent,
      fn: instantCloseOnLink,
    }),
  ]);
});
