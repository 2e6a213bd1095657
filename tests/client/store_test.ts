/**
 * SocpClient with a pluggable TrustStore (what the web app backs with IndexedDB), over a real socket to a lying
 * scripted server: pins, the server's key and the messages shown are written to the store, and a second client
 * on the same store does not show a replay of what the first one showed.
 */
import assert from "node:assert/strict";
import { type ClientEvent, MemoryTrustStore, SocpClient } from "../../lib/client/client.ts";
import { encryptTo } from "../../lib/crypto/rsa.ts";
import { dmPreimage } from "../../lib/protocol/preimages.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { type ScriptedConn, ScriptedServer } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import type { Frame } from "../helpers/ws_peer.ts";

const [srvKey, aliceKey, meKey] = await Promise.all(["user1", "user2", "user3"].map(fixtureKey));
const SRV = "srv";
const ME = "11111111-1111-4111-8111-111111111111";
const ALICE = "33333333-3333-4333-8333-333333333333";

Deno.test("a replay to a client restarted on the same store is not shown; pins and the server key are stored", async () => {
  let captured: Frame | undefined;
  const conns: ScriptedConn[] = [];
  const server = ScriptedServer.start({
    key: srvKey,
    onConnection: (conn) => {
      conns.push(conn);
      conn.onFrame = async (f) => {
        if (f.type !== "USER_HELLO") return;
        await conn.send({
          type: "ACK",
          from: SRV,
          to: ME,
          payload: { msg_ref: "USER_HELLO", server_id: SRV, server_pub: srvKey.publicKey },
        });
        await conn.send({
          type: "USER_ADVERTISE",
          from: SRV,
          to: "*",
          payload: {
            user_id: ALICE,
            server_id: SRV,
            pubkey: aliceKey.publicKey,
            meta: { display_name: "alice" },
          },
        });
        await conn.send({
          type: "USER_ADVERTISE",
          from: SRV,
          to: "*",
          payload: { user_id: ME, server_id: SRV, pubkey: meKey.publicKey, meta: {} },
        });
        if (!captured) {
          const ts = Date.now();
          const ciphertext = await encryptTo(meKey.publicKey, new TextEncoder().encode("once only"));
          const content_sig = await aliceKey.sign(dmPreimage({ ciphertext, from: ALICE, to: ME, ts }));
          captured = await conn.send({
            type: "USER_DELIVER",
            from: SRV,
            to: ME,
            ts,
            payload: { ciphertext, sender: ALICE, sender_pub: aliceKey.publicKey, content_sig },
          });
        } else {
          conn.sendRaw(captured);
          await conn.send({
            type: "ERROR",
            from: SRV,
            to: ME,
            payload: { code: "TIMEOUT", detail: "marker" },
          });
        }
      };
    },
  });
  const url = `ws://127.0.0.1:${server.port}`;
  const store = new MemoryTrustStore();
  try {
    const events: ClientEvent[] = [];
    const first = await SocpClient.connect(url, { userId: ME, key: meKey, store, reconnect: false });
    first.onEvent = (e) => events.push(e);
    events.push(...first.drainBuffered());
    await until(() => events.some((e) => e.kind === "dm"), "the DM");
    await first.close(500);
    assert.equal(store.seen.length, 1);
    assert.equal(store.contacts.get(ALICE)?.pubkey, aliceKey.publicKey);
    assert.equal(store.servers.get(url)?.pubkey, srvKey.publicKey);

    const later: ClientEvent[] = [];
    const second = await SocpClient.connect(url, { userId: ME, key: meKey, store, reconnect: false });
    second.onEvent = (e) => later.push(e);
    later.push(...second.drainBuffered());
    await until(
      () => later.some((e) => e.kind === "error" && e.detail === "marker"),
      "the marker after the replay",
    );
    assert.equal(later.filter((e) => e.kind === "dm").length, 0, JSON.stringify(later));
    await second.close(500);
  } finally {
    await server.close();
  }
});
