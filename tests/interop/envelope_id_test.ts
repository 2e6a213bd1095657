/**
 * PROFILE §15 "Envelope `id`" (issue 17): some servers refuse every frame without a top-level `id`
 * (`ERROR MISSING_ID_OR_TS`, hellos included) and silently drop a repeated `id`. A scripted server of that kind:
 * our client connects to it and a DM crosses both ways; our node joins it, and a DM crosses the link. Every frame
 * our side sent carries an `id` never used before on that connection.
 */
import assert from "node:assert/strict";
import { type ScriptedConn, ScriptedServer, userAdvert } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import type { Frame } from "../helpers/ws_peer.ts";
import {
  connectOurs,
  deliverFrom,
  joiningNode,
  linked,
  opts,
  ours,
  readDeliver,
  serverKey as srvKey,
  watch,
  zed,
} from "./common.ts";

const S = "strict-7d1e5c2a-0b6f-4e39-a1c4-2f8e9d0b7a61";

/**
 * A server that refuses frames without `id` (one ERROR each, as deployed) and drops a repeated one; `accepted` is
 * called with every frame it took.
 */
function strict(accepted: (f: Frame, conn: ScriptedConn, server: ScriptedServer) => void | Promise<void>) {
  const seen = new WeakMap<ScriptedConn, Set<string>>();
  return ScriptedServer.start({
    key: srvKey,
    onFrame: (f, conn, server) => {
      if (typeof f.id !== "string" || f.id === "" || typeof f.ts !== "number") {
        return conn.sendRaw({
          type: "ERROR",
          from: S,
          to: f.from ?? "*",
          ts: Date.now(),
          payload: { code: "MISSING_ID_OR_TS", detail: "frame has no id or ts" },
          sig: "",
          id: crypto.randomUUID(),
        });
      }
      const ids = seen.get(conn) ?? new Set<string>();
      seen.set(conn, ids);
      if (ids.has(f.id)) return; // a repeated id is dropped silently (per connection)
      ids.add(f.id);
      return accepted(f, conn, server);
    },
  });
}

/** Every frame `conn` received had an `id`, and no two the same. */
function freshIds(conn: ScriptedConn, label: string): number {
  const ids = conn.received.map((f) => f.id);
  assert.ok(ids.every((i) => typeof i === "string" && i.length > 0), `every frame has an id (${label})`);
  assert.equal(new Set(ids).size, ids.length, `no id repeated (${label})`);
  const refused = conn.log.filter((e) => e.dir === "out" && e.frame.payload?.code === "MISSING_ID_OR_TS");
  assert.deepEqual(refused, [], `nothing refused for a missing id (${label})`);
  return ids.length;
}

Deno.test({ name: "our client and a server that requires envelope ids", ...opts }, async () => {
  await using server = strict(async (f, conn) => {
    if (f.type === "USER_HELLO") {
      await conn.send({
        type: "ACK",
        from: S,
        to: f.from,
        payload: { msg_ref: "USER_HELLO", server_id: S, server_pub: srvKey.publicKey },
        id: crypto.randomUUID(),
      });
      await conn.send({ ...userAdvert(zed, "zed", S), id: crypto.randomUUID() });
    }
  });
  await using client = await connectOurs(`ws://127.0.0.1:${server.port}`, { reconnect: false });
  const got = watch(client);
  const conn = server.conns[0];
  await until(() => client.isOnline(zed.id), "zed online");
  await client.tell(zed.id, "hello strict");
  const dm = await conn.waitFor((f) => f.type === "MSG_DIRECT", "our DM");
  assert.equal(new TextDecoder().decode(await zed.key.decrypt(dm.payload.ciphertext)), "hello strict");
  const back = await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "hello ours", S);
  await conn.send({
    ...back,
    type: "USER_DELIVER",
    to: ours.id,
    payload: {
      ciphertext: back.payload.ciphertext,
      sender: zed.id,
      sender_pub: zed.key.publicKey,
      content_sig: back.payload.content_sig,
    },
    id: crypto.randomUUID(),
  });
  const ev = await until(() => got.find((e) => e.kind === "dm"), "zed's DM");
  assert.ok(ev.kind === "dm" && ev.text === "hello ours" && ev.verified);
  const n = freshIds(conn, "client");
  console.log(`[interop] envelope ids: our client sent ${n} frames, each with a fresh id`);
});

Deno.test({ name: "our node joins a server that requires envelope ids", ...opts }, async () => {
  await using server = strict(async (f, conn, srv) => {
    if (f.type !== "SERVER_HELLO_JOIN") return;
    await conn.send({
      type: "SERVER_WELCOME",
      from: S,
      to: f.from,
      payload: { server_id: S, server_pub: srvKey.publicKey, host: "127.0.0.1", port: srv.port },
      id: crypto.randomUUID(),
    });
    await conn.send({ ...userAdvert(zed, "zed", S), id: crypto.randomUUID() });
  });
  await using node = await joiningNode(server.port);
  await linked(node, 1);
  const link = server.conns[0];
  await using client = await connectOurs(node.url);
  await until(() => client.isOnline(zed.id), "zed online through the link");
  await client.tell(zed.id, "over the link");
  const sd = await link.waitFor((f) => f.type === "SERVER_DELIVER", "our SERVER_DELIVER");
  assert.equal(await readDeliver(zed.key, sd), "over the link");
  await link.waitFor((f) => f.type === "HEARTBEAT", "a heartbeat");
  const n = freshIds(link, "node");
  console.log(`[interop] envelope ids: our node sent ${n} frames on the link, each with a fresh id`);
});
