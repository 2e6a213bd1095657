/**
 * Benchmark (not a test): DM throughput of one node over real sockets.
 *
 *   deno run -A tests/bench/dm_throughput.ts [pairs=8] [dms per pair=150] [window=16]
 *   (also run by `deno task bench`)
 *
 * A real node process; N sender/receiver user pairs on loopback. Each sender keeps `window` DMs in flight (one
 * RSA-4096 OAEP block of ciphertext each, as a one-line chat message is) and sends the next when its receiver
 * gets one. Each DM costs the node one RSA-4096 PSS signature (the USER_DELIVER it issues), so the ceiling is the
 * signing rate: it is measured in the same run (this process, the same key size and salt, the same concurrency,
 * before and after the DMs) and DMs/s is printed as a ratio of it. Measured: DMs/s, latency from send to delivery
 * (p50/p99), signatures/s; derived: the ratio.
 */
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { RawPeer } from "../helpers/ws_peer.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";

const pairs = Number(Deno.args[0] ?? 8);
const perPair = Number(Deno.args[1] ?? 150);
const window = Number(Deno.args[2] ?? 16);
const uid = (i: number) => `d0000000-0000-4000-8000-${String(i).padStart(12, "0")}`;

async function signRate(ms: number, concurrency: number): Promise<number> {
  const k = await fixtureKey("user6");
  const data = new TextEncoder().encode(JSON.stringify({ ciphertext: "A".repeat(684), n: 0 }));
  let n = 0;
  const end = performance.now() + ms;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      await k.sign(data);
      n++;
    }
  }));
  return n / ((performance.now() - t0) / 1000);
}

const node = await NodeProcess.start({ env: { SOCP_RATE_PER_SEC: "100000", SOCP_RATE_BURST: "100000" } });
const peers: RawPeer[] = [];
try {
  const keys = await Promise.all(["user1", "user2", "user3", "user4", "user5"].map(fixtureKey));
  const hello = async (i: number) => {
    const p = await RawPeer.open(node.url);
    peers.push(p);
    p.send({
      type: "USER_HELLO",
      from: uid(i),
      to: "",
      ts: Date.now(),
      payload: { client: "b", pubkey: keys[i % 5].publicKey },
    });
    await p.waitFor((f) => f.type === "ACK" && f.payload.msg_ref === "USER_HELLO", 30_000, "ACK");
    return p;
  };
  const senders: RawPeer[] = [];
  const receivers: RawPeer[] = [];
  for (let i = 0; i < pairs; i++) {
    senders.push(await hello(2 * i));
    receivers.push(await hello(2 * i + 1));
    await new Promise((r) => setTimeout(r, 150)); // stay under the default hello rate of 10/s
  }
  const sign0 = await signRate(2000, window);

  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(senders.map((s, i) =>
    new Promise<void>((done, fail) => {
      const r = receivers[i];
      const sentAt = new Map<string, number>();
      let sent = 0;
      let got = 0;
      const timer = setTimeout(
        () => fail(new Error(`pair ${i}: ${got} of ${perPair} DMs in 120 s`)),
        120_000,
      );
      const send = () => {
        const tag = encodeBase64Url(new TextEncoder().encode(`${i}.${sent}`));
        const ciphertext = tag + "A".repeat(684 - tag.length);
        sentAt.set(ciphertext, performance.now());
        s.send({
          type: "MSG_DIRECT",
          from: uid(2 * i),
          to: uid(2 * i + 1),
          ts: Date.now(),
          payload: { ciphertext, sender_pub: keys[(2 * i) % 5].publicKey, content_sig: "AAAA" },
        });
        sent++;
      };
      r.ws.addEventListener("message", (e) => {
        const f = JSON.parse(String(e.data));
        if (f.type !== "USER_DELIVER") return;
        const at = sentAt.get(f.payload.ciphertext);
        if (at !== undefined) latencies.push(performance.now() - at);
        r.frames.length = 0; // keep the receiver's log small
        got++;
        if (got === perPair) {
          clearTimeout(timer);
          done();
        } else if (sent < perPair) send();
      });
      while (sent < Math.min(window, perPair)) send();
    })
  ));
  const secs = (performance.now() - t0) / 1000;
  const sign1 = await signRate(2000, window);
  const total = pairs * perPair;
  const dps = total / secs;
  const signs = (sign0 + sign1) / 2;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  console.log(
    `DM throughput over real sockets: ${pairs} pairs x ${perPair} DMs, ${window} in flight per pair`,
  );
  console.log(`  ${total} DMs delivered in ${secs.toFixed(2)} s = ${dps.toFixed(0)} DMs/s`);
  console.log(`  latency send -> delivery: p50 ${pct(0.5).toFixed(1)} ms, p99 ${pct(0.99).toFixed(1)} ms`);
  console.log(
    `  RSA-4096 PSS signing rate, same run: ${sign0.toFixed(0)}/s before, ${
      sign1.toFixed(0)
    }/s after (concurrency ${window})`,
  );
  console.log(`  derived: DMs/s / signatures/s = ${(dps / signs).toFixed(2)}`);
} finally {
  for (const p of peers) p.close();
  await node.kill();
}
