/** Shared pieces of the interop suite: fixture identities, timers, and the checks every scenario makes. */
import assert from "node:assert/strict";
import { type ClientEvent, type ConnectOptions, SocpClient } from "../../lib/client/client.ts";
import { encryptTo, type PrivateKey } from "../../lib/crypto/rsa.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import type { ScriptedConn } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import type { Frame } from "../helpers/ws_peer.ts";

/** Short timers: a 0.5 s heartbeat, links silent for 2 s are dead (PROFILE §12 scaled down). */
export const TIMERS = ["--heartbeat-interval", "0.5", "--link-timeout", "2"];
/** Sanitizers off: the node runs as a child process and the scripted server's sockets outlive single steps. */
export const opts = { sanitizeOps: false, sanitizeResources: false };
/**
 * For steps that run at the same time (`Promise.all` of `t.step`s, each with its own node and scripted peers):
 * scenarios that spend seconds counting a link's heartbeats wait together instead of one after the other. Deno
 * runs steps concurrently only with every sanitizer off.
 */
export const concurrent = { ...opts, sanitizeExit: false };

/** A user of the interop scenarios: a fixed id and a fixture key. */
export interface User {
  id: string;
  key: PrivateKey;
}

/** Our user, on our node (or connected to a scripted server by our client). */
export const ours: User = { id: "0a000000-0000-4000-8000-0000000000a1", key: await fixtureKey("user1") };
/** A user at home on the scripted server. */
export const zed: User = { id: "2ed00000-0000-4000-8000-00000000002e", key: await fixtureKey("user6") };
/** Another user of the scripted side. */
export const zoe: User = { id: "20e00000-0000-4000-8000-00000000020e", key: await fixtureKey("user3") };
/** The scripted server's own key. */
export const serverKey: PrivateKey = await fixtureKey("user5");

/**
 * Our user `ours` connected with our real client (`SocpClient.connect`: resolves once the hello is accepted);
 * `await using` closes it (CTRL_CLOSE, then at most `closeMs` for the close handshake).
 */
export async function connectOurs(
  url: string,
  extra: Partial<ConnectOptions> = {},
  closeMs = 500,
): Promise<SocpClient & AsyncDisposable> {
  const c = await SocpClient.connect(url, { userId: ours.id, key: ours.key, displayName: "ours", ...extra });
  return Object.assign(c, { [Symbol.asyncDispose]: () => c.close(closeMs) });
}

/**
 * Our node, joining the network through a scripted introducer on `port` that signs with `key` (the bootstrap
 * entry `127.0.0.1:PORT#KEY`, or `ws://127.0.0.1:PORT/PATH#KEY` with a `path`), on the short {@linkcode TIMERS}.
 */
export function joiningNode(
  port: number,
  key: { publicKey: string } = serverKey,
  path?: string,
): Promise<NodeProcess> {
  const at = path === undefined ? `127.0.0.1:${port}` : `ws://127.0.0.1:${port}${path}`;
  return NodeProcess.start({ args: ["--bootstrap", `${at}#${key.publicKey}`, ...TIMERS] });
}

const enc = new TextEncoder();

export async function health(n: NodeProcess): Promise<{ servers_linked: number; users_online: number }> {
  return await (await fetch(`${n.http}/healthz`)).json();
}

/** Collect a client's events from now on. */
export function watch(c: SocpClient): ClientEvent[] {
  const got = c.drainBuffered();
  c.onEvent = (e) => got.push(e);
  return got;
}

/** A SERVER_DELIVER from the scripted server's user `sender` to our user, encrypted and signed end to end. */
export async function deliverFrom(
  sender: { id: string; key: PrivateKey },
  to: { id: string; pubkey: string },
  text: string,
  from: string,
): Promise<Frame> {
  const ts = Date.now();
  const ciphertext = await encryptTo(to.pubkey, enc.encode(text));
  const content_sig = await sender.key.sign(enc.encode(ciphertext + sender.id + to.id + ts));
  return {
    type: "SERVER_DELIVER",
    from,
    to: "*",
    ts,
    payload: {
      user_id: to.id,
      ciphertext,
      sender: sender.id,
      sender_pub: sender.key.publicKey,
      content_sig,
    },
  };
}

/** Decrypt a SERVER_DELIVER's ciphertext with the scripted user's key. */
export async function readDeliver(key: PrivateKey, f: Frame): Promise<string> {
  return new TextDecoder().decode(await key.decrypt(f.payload.ciphertext));
}

/**
 * Wait until our node has sent `n` more HEARTBEATs on `conn` (from now): `n` rounds of the node's own heartbeat
 * timer. A check that something holds "for three link timeouts" counts the node's own rounds instead of the
 * test's wall clock, so a loaded machine stretches the wait instead of breaking it. Returns the index in
 * `conn.log` just after each of those heartbeats.
 */
export async function heartbeatRounds(conn: ScriptedConn, n: number, label: string): Promise<number[]> {
  const start = conn.log.length;
  const beats = () =>
    conn.log.flatMap((e, i) => i >= start && e.dir === "in" && e.frame.type === "HEARTBEAT" ? [i + 1] : []);
  await until(() => beats().length >= n, `${n} heartbeats from our node (${label})`, 60_000);
  return beats().slice(0, n);
}

/**
 * The quiet-link measurement, timed by our node's heartbeats: frames both ways on `conn` over two consecutive
 * windows of `rounds` heartbeats from our node each. Prints the counts and the per-minute figure derived from
 * them; asserts the link carried heartbeats only (ours, and their echoes when the peer echoes), no ERROR, and that
 * the second window is not busier than the first (flat, not growing). With a 0.5 s heartbeat and a 2 s link
 * timeout, `rounds` 6 covers three link timeouts of the node's own clock.
 */
export async function quietLink(
  label: string,
  conn: ScriptedConn,
  rounds: number,
  heartbeatMs: number,
): Promise<{ first: number; second: number; perMinute: number }> {
  const start = conn.log.length;
  const t0 = Date.now();
  const beats = await heartbeatRounds(conn, 2 * rounds, label);
  const mid = beats[rounds - 1], end = beats[2 * rounds - 1];
  const a = conn.log.slice(start, mid).map((e) => e.frame);
  const b = conn.log.slice(mid, end).map((e) => e.frame);
  const t2 = conn.log[end - 1].at;
  const perMinute = Math.round(((a.length + b.length) * 60_000) / Math.max(1, t2 - t0));
  console.log(
    `[interop] ${label}: idle link, frames both ways: ${a.length} over ${rounds} of our heartbeats, then ${b.length} ` +
      `over the next ${rounds}; ${
        ((t2 - t0) / 1000).toFixed(1)
      } s in all; derived: ${perMinute} frames/min ` +
      `(heartbeat ${heartbeatMs} ms)`,
  );
  const types = new Set([...a, ...b].map((f) => f.type));
  assert.deepEqual(
    [...types].filter((t) => t !== "HEARTBEAT"),
    [],
    `only heartbeats on the idle link (${label})`,
  );
  // Flat: at most a quarter window's worth of jitter between the windows (the peer's own heartbeats or echoes run
  // on its clock, not ours).
  const slack = Math.ceil(rounds / 4) + 1;
  assert.ok(b.length <= a.length + slack, `idle traffic grows: ${a.length} then ${b.length} (${label})`);
  return { first: a.length, second: b.length, perMinute };
}

/** No ERROR frame from our node on `conn`, and no strike in its log. */
export function noRefusals(node: NodeProcess, conns: ScriptedConn[], label: string): void {
  const errors = conns.flatMap((c) => c.received.filter((f) => f.type === "ERROR"));
  assert.deepEqual(errors, [], `ERROR frames from our node (${label})`);
  const refused = node.logs.filter((l) => l.includes("frame.refused"));
  assert.deepEqual(refused, [], `refusals in our node's log (${label})`);
}

/** Wait until the node reports `n` linked servers. */
export function linked(node: NodeProcess, n: number, ms = 20_000): Promise<unknown> {
  return until(async () => (await health(node)).servers_linked === n, `${n} linked server(s)`, ms);
}
