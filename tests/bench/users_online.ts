/**
 * Benchmark (not a test): users online on one node, and what each costs.
 *
 *   deno run -A tests/bench/users_online.ts [levels...]     (default 100 500 1000; `deno task bench` runs it)
 *
 * Every user receives every other user's advert, so the ramp moves O(N²) frames: 1000 users is ~2.3 GB through
 * the node and ~1 minute here on 2 shared cores; pass 2000 explicitly for the next level (~4 minutes).
 *
 * A real node process; N identified users connected from this process over raw sockets that read and discard
 * what the node sends (every user receives every other user's advert, PROFILE §6). Users have distinct RSA-4096
 * public keys: real keys are too slow to generate by the thousand, so each is user1's key with a random modulus
 * (the node only parses, imports and encrypts to it). At each level it prints, measured:
 *   - the node's resident memory (VmRSS from /proc) and the V8 heap in use (from /metrics),
 *   - hello latency: a probe user's USER_HELLO sent -> its ACK received (median and max of 10 probes), and
 *     -> the whole snapshot received (one advert per user online),
 * and, derived: RSS per user = (RSS at N - RSS with no user) / N when idle, and the same since the previous level
 * ((RSS at N - RSS at the previous level) / the users added: the cost of one more user, without the one-time
 * costs of the first ones: compiled code, caches filled on first use). "Idle" is after the node has handed every
 * frame over (`socp_effects_waiting` and `socp_unsent_bytes_max` both 0) and its RSS has stopped falling (the
 * node collects the ramp's garbage two quiet seconds after it, see node.ts `idleCollector`): sampled every second
 * until five samples agree within 1%, at most 30 s.
 */
import { decodeBase64Url, encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { fixtureText } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { rssKiB, StalledPeer } from "../helpers/stalled_peer.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

const levels = Deno.args.length ? Deno.args.map(Number) : [100, 500, 1000];
const max = Math.max(...levels);

// user1's SPKI; the modulus is the INTEGER after 02 82 02 01 00 (a 4096-bit modulus with its sign byte).
const spki = decodeBase64Url(fixtureText("user1.spki.b64").trim())!;
const at =
  spki.findIndex((_, i) =>
    spki[i] === 0x02 && spki[i + 1] === 0x82 && spki[i + 2] === 0x02 && spki[i + 3] === 0x01 &&
    spki[i + 4] === 0
  ) + 5;
function fakeKey(): string {
  const k = spki.slice();
  const m = k.subarray(at, at + 512);
  crypto.getRandomValues(m);
  m[0] |= 0x80; // 4096 bits
  m[511] |= 1; // odd
  return encodeBase64Url(k);
}
const uid = (i: number) => `0be0c000-0000-4000-8000-${String(i).padStart(12, "0")}`;

async function metric(n: NodeProcess, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(await (await fetch(`${n.http}/metrics`)).text());
  return m ? Number(m[1]) : NaN;
}

const node = await NodeProcess.start({
  env: {
    SOCP_MAX_CONNS_PER_ADDR: String(max + 100),
    SOCP_HELLO_RATE: "1000000",
    SOCP_HELLO_BURST: "1000000",
  },
});
const pid = node.child.pid;
const users: StalledPeer[] = [];
const drains: Promise<number>[] = [];
const settle = () => new Promise((r) => setTimeout(r, 1500));

async function addUser(i: number): Promise<void> {
  const p = await StalledPeer.open(node.port, 60_000);
  await p.send({
    type: "USER_HELLO",
    from: uid(i),
    to: "",
    ts: Date.now(),
    payload: { client: "b", pubkey: fakeKey() },
  });
  const ack = await p.readUntil(
    (f) => f.kind === "text" && f.text.includes('"msg_ref":"USER_HELLO"'),
    60_000,
  );
  if (!ack) throw new Error(`user ${i} was not admitted`);
  users.push(p);
  drains.push(p.discardAll());
}

async function probe(n: number, k: number): Promise<{ ack: number; snapshot: number }> {
  const p = await RawPeer.open(node.url);
  const t0 = performance.now();
  p.send({
    type: "USER_HELLO",
    from: uid(1_000_000 + k),
    to: "",
    ts: Date.now(),
    payload: { client: "p", pubkey: fakeKey() },
  });
  await p.waitFor((f) => f.type === "ACK" && f.payload.msg_ref === "USER_HELLO", 60_000, "probe ACK");
  const ack = performance.now() - t0;
  const end = Date.now() + 20_000;
  while (p.count("USER_ADVERTISE") < n && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
  if (p.count("USER_ADVERTISE") < n) {
    console.log(`  probe: ${p.count("USER_ADVERTISE")} of ${n} adverts in 20 s`);
  }
  const snapshot = performance.now() - t0;
  p.close();
  await p.closed;
  return { ack, snapshot };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  await settle();
  const base = rssKiB(pid);
  console.log(
    `users online on one node (RSA-4096 users, distinct keys); node RSS with no user: ${
      (base / 1024).toFixed(1)
    } MiB`,
  );
  console.log(
    "users | RSS MiB after ramp / idle | heap MiB | RSS/user KiB idle (derived) | " +
      "same, since the previous level (derived) | hello->ACK ms median/max | hello->snapshot ms median | ramp s",
  );
  let k = 0;
  let prev: { level: number; rss: number } | undefined;
  for (const level of levels) {
    const t0 = performance.now();
    while (users.length < level) {
      const batch = Math.min(50, level - users.length);
      if (Deno.env.get("BENCH_VERBOSE")) {
        console.log(`  ${users.length} users, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      }
      await Promise.all(Array.from({ length: batch }, () => addUser(k++)));
    }
    const ramp = (performance.now() - t0) / 1000;
    const quiet = performance.now() + 120_000;
    while (
      performance.now() < quiet &&
      ((await metric(node, "socp_effects_waiting")) > 0 || (await metric(node, "socp_unsent_bytes_max")) > 0)
    ) await new Promise((r) => setTimeout(r, 100));
    if (performance.now() >= quiet) console.log("  (the node had not handed everything over after 120 s)");
    const rssRamp = rssKiB(pid);
    const samples: number[] = [];
    const idleEnd = performance.now() + 30_000;
    while (performance.now() < idleEnd) {
      await new Promise((r) => setTimeout(r, 1000));
      samples.push(rssKiB(pid));
      const last = samples.slice(-5);
      if (last.length === 5 && Math.max(...last) <= Math.min(...last) * 1.01) break;
    }
    if (performance.now() >= idleEnd) {
      console.log("  (RSS had not settled after 30 s: the last sample is used)");
    }
    const rss = samples[samples.length - 1];
    const heap = (await metric(node, "socp_memory_heap_used_bytes")) / 1048576;
    const heapTotal = (await metric(node, "socp_memory_heap_total_bytes")) / 1048576;
    const external = (await metric(node, "socp_memory_external_bytes")) / 1048576;
    console.log(`  (heap total ${heapTotal.toFixed(1)} MiB, external ${external.toFixed(1)} MiB)`);
    const acks: number[] = [];
    const snaps: number[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await probe(users.length, level * 100 + i);
      acks.push(r.ack);
      snaps.push(r.snapshot);
    }
    console.log(
      `${String(level).padStart(5)} | ${
        ((rssRamp / 1024).toFixed(1) + " / " + (rss / 1024).toFixed(1)).padStart(25)
      } | ${heap.toFixed(1).padStart(8)} | ${((rss - base) / level).toFixed(1).padStart(27)} | ${
        (prev ? ((rss - prev.rss) / (level - prev.level)).toFixed(1) : "-").padStart(39)
      } | ${median(acks).toFixed(1).padStart(10)} / ${Math.max(...acks).toFixed(1).padEnd(13)} | ${
        median(snaps).toFixed(1).padStart(25)
      } | ${ramp.toFixed(1)}`,
    );
    prev = { level, rss };
  }
} finally {
  const cut = node.logs.filter((l) => /too_slow|ERROR|error/.test(l));
  if (cut.length) console.log(cut.slice(0, 5).join("\n"));
  for (const u of users) u.close();
  await Promise.allSettled(drains);
  await node.kill();
}
