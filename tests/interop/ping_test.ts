/**
 * Liveness at the WebSocket level (issue 8 item 8, PROFILE §15): our node pings the server links it accepted and
 * drops one whose pongs stop, while a server that keeps the link alive only by answering pings (never a
 * HEARTBEAT frame) stays linked across many link timeouts.
 */
import assert from "node:assert/strict";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { ScriptedConn } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import { concurrent, health, TIMERS } from "./common.ts";

const enc = new TextEncoder();

/** A masked client text frame (RFC 6455 §5.2), for payloads under 64 KiB. */
function textFrame(text: string): Uint8Array {
  const data = enc.encode(text);
  const mask = crypto.getRandomValues(new Uint8Array(4));
  const head = data.length < 126
    ? [0x81, 0x80 | data.length]
    : [0x81, 0x80 | 126, data.length >> 8, data.length & 255];
  const out = new Uint8Array(head.length + 4 + data.length);
  out.set(head, 0);
  out.set(mask, head.length);
  for (let i = 0; i < data.length; i++) out[head.length + 4 + i] = data[i] ^ mask[i % 4];
  return out;
}

/**
 * A server peer on a raw TCP socket that joins our node, then never answers a ping. Resolves with the opcodes
 * it received, how long the node kept the connection open, and whether the peer gave up first (its own 60 s
 * deadline, a bound on the wait, never reached when the node works) instead of the node closing the connection.
 */
async function deafPeer(
  port: number,
  join: unknown,
): Promise<{ opcodes: number[]; openMs: number; gaveUp: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  await conn.write(
    enc.encode(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    ),
  );
  const t0 = Date.now();
  const buf = new Uint8Array(65_536);
  let pending = new Uint8Array(0);
  let upgraded = false;
  const opcodes: number[] = [];
  let gaveUp = false;
  const deadline = setTimeout(() => {
    gaveUp = true;
    conn.close();
  }, 60_000);
  try {
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(buf.subarray(0, n), pending.length);
      pending = joined;
      if (!upgraded) {
        const end = new TextDecoder().decode(pending).indexOf("\r\n\r\n");
        if (end < 0) continue;
        upgraded = true;
        pending = pending.subarray(end + 4);
        await conn.write(textFrame(JSON.stringify(join)));
      }
      // Server frames are unmasked: opcode, 7-bit / 16-bit / 64-bit length, payload.
      while (pending.length >= 2) {
        let len = pending[1] & 0x7f;
        let at = 2;
        if (len === 126) {
          if (pending.length < 4) break;
          len = (pending[2] << 8) | pending[3];
          at = 4;
        } else if (len === 127) {
          if (pending.length < 10) break;
          len = Number(new DataView(pending.buffer, pending.byteOffset + 2, 8).getBigUint64(0));
          at = 10;
        }
        if (pending.length < at + len) break;
        opcodes.push(pending[0] & 0x0f);
        pending = pending.subarray(at + len);
      }
    }
  } finally {
    clearTimeout(deadline);
    try {
      conn.close();
    } catch { /* closed by the node */ }
  }
  return { opcodes, openMs: Date.now() - t0, gaveUp };
}

/** Our node pings the links it accepted: a peer that never pongs is dropped. */
async function deafPeerDropped(): Promise<void> {
  await using node = await NodeProcess.start({ args: ["--introducer", ...TIMERS] });
  const peerKey = (await fixtureKey("user5")).publicKey;
  const peerId = "de0f0000-0000-4000-8000-0000000000de";
  // An unsigned JOIN is accepted (PROFILE §12); the node welcomes it, then pings it.
  const result = deafPeer(node.port, {
    type: "SERVER_HELLO_JOIN",
    from: peerId,
    to: `127.0.0.1:${node.port}`,
    ts: Date.now(),
    payload: { host: "127.0.0.1", port: 1, pubkey: peerKey },
  });
  await until(async () => (await health(node)).servers_linked === 1, "the deaf peer linked");
  const { opcodes, openMs, gaveUp } = await result;
  console.log(`[interop] a peer that never pongs: dropped after ${openMs} ms (link timeout 2000 ms)`);
  assert.ok(opcodes.includes(0x9), `the node sent a WebSocket ping (opcodes ${opcodes.join(",")})`);
  assert.ok(opcodes.includes(0x1), "and text frames (the welcome)");
  assert.equal(gaveUp, false, `the node closed the connection (it was still open after ${openMs} ms)`);
  await until(
    () => node.logs.some((l) => l.includes("link.down") && l.includes(peerId)),
    "link.down logged",
  );
  assert.equal((await health(node)).servers_linked, 0);
}

/** A server that answers pings but never sends HEARTBEAT stays linked. */
async function pongingPeerStays(): Promise<void> {
  await using node = await NodeProcess.start({ args: ["--introducer", ...TIMERS] });
  // Deno's WebSocket answers pings by itself.
  await using peer = await ScriptedConn.dial(node.url, await fixtureKey("user6"));
  const heartbeats = () => peer.received.filter((f) => f.type === "HEARTBEAT").length;
  peer.sendRaw({
    type: "SERVER_HELLO_JOIN",
    from: "0e0e0000-0000-4000-8000-0000000000e0",
    to: "x",
    ts: Date.now(),
    payload: { host: "127.0.0.1", port: 1, pubkey: peer.key.publicKey },
  });
  await until(async () => (await health(node)).servers_linked === 1, "linked");
  // Three link timeouts without a single frame from this peer, on the node's own clock: 12 more of its 0.5 s
  // heartbeats (a loaded machine stretches the wait instead of breaking it); that is also longer than the
  // node's WebSocket ping timeout (5 s at the least), so the pongs are what keeps the link.
  const from = heartbeats();
  await until(() => heartbeats() >= from + 12, "12 more heartbeats from our node", 60_000);
  assert.equal((await health(node)).servers_linked, 1);
  assert.ok(peer.open);
}

Deno.test({ name: "WebSocket-level liveness of the links our node accepted", ...concurrent }, async (t) => {
  // Each waits seconds of its node's ping timeout or heartbeats: on two nodes at the same time.
  await Promise.all([
    t.step({
      name: "a peer that never pongs is dropped",
      ...concurrent,
      fn: deafPeerDropped,
    }),
    t.step({
      name: "a server that answers pings but never sends HEARTBEAT stays linked",
      ...concurrent,
      fn: pongingPeerStays,
    }),
  ]);
});
