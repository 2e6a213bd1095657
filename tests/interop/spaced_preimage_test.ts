/**
 * PROFILE §15 "A spaced signature preimage" (issue 17): some servers sign `json.dumps(payload, sort_keys=True)`
 * (separators `", "` and `": "`, ASCII escapes) and silently drop every frame not signed that way. Scripted
 * Python-style peers of that kind:
 * - a server joins our node with a spaced-signed JOIN; our node verifies it, welcomes it, and signs that link's
 *   frames spaced (the welcome and a DM arrive; a DM back verifies at our client);
 * - our client connects to a server that signs spaced: it verifies its frames, and signs its own DMs spaced.
 * And a frame whose spaced signature does not cover what it says is still refused.
 */
import assert from "node:assert/strict";
import { type PrivateKey, verifySignature } from "../../lib/crypto/rsa.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { ScriptedConn, ScriptedServer, userAdvert } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import type { Frame } from "../helpers/ws_peer.ts";
import {
  connectOurs,
  deliverFrom,
  health,
  opts,
  ours,
  readDeliver,
  serverKey as pyKey,
  TIMERS,
  watch,
  zed,
} from "./common.ts";

const PY = "py-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9";
const enc = new TextEncoder();

/** Python's `json.dumps(v, sort_keys=True)`, written here independently of lib/protocol. */
function dumps(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "[" + v.map(dumps).join(", ") + "]";
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    return "{" + Object.keys(o).sort().map((k) => `${dumps(k)}: ${dumps(o[k])}`).join(", ") + "}";
  }
  if (typeof v === "string") {
    return JSON.stringify(v).replace(
      /[\u007f-\uffff]/g,
      (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    );
  }
  return JSON.stringify(v);
}

const spacedSign = (key: PrivateKey, payload: unknown) => key.sign(enc.encode(dumps(payload)));
const spacedOk = (pub: string, f: Frame) =>
  typeof f.sig === "string" && f.sig !== "" && verifySignature(pub, enc.encode(dumps(f.payload)), f.sig);

/** Send `frame` signed spaced with `key`. */
async function sendSpaced(conn: ScriptedConn, frame: Frame, key = pyKey): Promise<void> {
  const f = { ts: Date.now(), ...frame };
  f.sig = await spacedSign(key, f.payload);
  conn.sendRaw(f);
}

Deno.test(
  { name: "a Python-style server joins our node: spaced signatures both ways", ...opts },
  async () => {
    await using node = await NodeProcess.start({ args: TIMERS });
    await using conn = await ScriptedConn.dial(node.url, pyKey);
    const accepted: Frame[] = [];
    let dropped = 0;
    const ourPub: string = (await (await fetch(`${node.http}/.well-known/socp`)).json()).pubkey;
    conn.onFrame = async (f: Frame) => {
      // Verified with our node's key, spaced form only; anything else is dropped silently.
      if (await spacedOk(ourPub, f)) accepted.push(f);
      else dropped++;
    };
    // A JOIN whose spaced signature does not cover its payload: refused with one ERROR, no link.
    const join = { host: "127.0.0.1", port: 1, pubkey: pyKey.publicKey };
    {
      await using bad = await ScriptedConn.dial(node.url, pyKey);
      bad.sendRaw({
        type: "SERVER_HELLO_JOIN",
        from: "py-forged",
        to: "*",
        ts: Date.now(),
        payload: { ...join, port: 2 },
        sig: await spacedSign(pyKey, join),
      });
      const err = await bad.waitFor((f) => f.type === "ERROR", "the refusal of a forged JOIN");
      assert.equal(err.payload.code, "INVALID_SIG");
    }

    await sendSpaced(conn, { type: "SERVER_HELLO_JOIN", from: PY, to: "*", payload: join });
    const welcome = await until(
      () => accepted.find((f) => f.type === "SERVER_WELCOME"),
      "a spaced WELCOME",
    );
    assert.equal(welcome.payload.assigned_id, PY);
    await until(async () => (await health(node)).servers_linked === 1, "the link");
    await sendSpaced(conn, userAdvert(zed, "zed", PY));
    await using client = await connectOurs(node.url);
    const got = watch(client);
    await until(() => client.directory.has(zed.id), "zed (advert signed spaced) in our directory");
    await client.tell(zed.id, "spaced over");
    const sd = await until(
      () => accepted.find((f) => f.type === "SERVER_DELIVER"),
      "a spaced SERVER_DELIVER",
    );
    assert.equal(await readDeliver(zed.key, sd), "spaced over");
    const back = await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "spaced back", PY);
    await sendSpaced(conn, back);
    const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM");
    assert.ok(dm.kind === "dm" && dm.text === "spaced back" && dm.verified);
    // Our advert for ours went out spaced too; nothing we sent on this link needed the canonical form.
    await until(() => accepted.find((f) => f.type === "USER_ADVERTISE"), "our advert, spaced");
    console.log(
      `[interop] spaced peer: ${accepted.length} frames of ours verified spaced, ${dropped} dropped (${
        JSON.stringify(conn.received.filter((f) => !accepted.includes(f)).map((f) => f.type))
      })`,
    );
    const errors = conn.received.filter((f) => f.type === "ERROR");
    assert.deepEqual(errors, [], "no ERROR from our node on the spaced link");
  },
);

Deno.test({ name: "our client and a server that signs spaced and drops other forms", ...opts }, async () => {
  let dmOk = false;
  await using srv = ScriptedServer.start({
    key: pyKey,
    onFrame: async (f, conn) => {
      if (f.type === "USER_HELLO") {
        // The hello is accepted as sent (our client cannot know the server's form before its first answer).
        await sendSpaced(conn, {
          type: "ACK",
          from: PY,
          to: f.from,
          payload: { msg_ref: "USER_HELLO", server_id: PY, server_pub: pyKey.publicKey },
        });
        await sendSpaced(conn, userAdvert(zed, "zed", PY));
        return;
      }
      if (f.type === "MSG_DIRECT" && await spacedOk(ours.key.publicKey, f)) dmOk = true;
    },
  });
  await using client = await connectOurs(`ws://127.0.0.1:${srv.port}`, { reconnect: false });
  const got = watch(client);
  const conn = srv.conns[0];
  await until(() => client.isOnline(zed.id), "zed (advert signed spaced) online");
  await client.tell(zed.id, "spaced dm");
  await until(() => dmOk, "our DM, signed spaced, taken by the server");
  const back = await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "from zed", PY);
  const { user_id: _u, ...dmPayload } = back.payload;
  await sendSpaced(conn, { type: "USER_DELIVER", from: PY, to: ours.id, ts: back.ts, payload: dmPayload });
  const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM, signed spaced by the server");
  assert.ok(dm.kind === "dm" && dm.text === "from zed");
  const warnings = got.filter((e) => e.kind === "warning");
  assert.deepEqual(warnings, [], "no server frame dropped as unverified");
});
