/**
 * Benchmark (not a test): what one hostile user costs the node's memory (issue 16).
 *
 *   deno run -A tests/bench/hostile_memory.ts [dms=400] [KB per DM=200] [DMs per 100 ms=10]
 *   (also run by `deno task bench`)
 *
 * A real node process (the shipped V8 flags). A victim says hello, then never reads again; a sender sends it
 * `dms` DMs of `KB` kilobytes of ciphertext: first paced (10 at a time, each burst 100 ms or more after the node
 * took the last one in: under the rate limit and the in-flight bound, the most it can push unrefused; the node
 * cuts the victim as too slow and queues the rest in SQLite), then, on a fresh node, in one burst (the token bucket holds
 * 400; the node sheds what is past its in-flight bound and closes the sender after its strikes). Both users then
 * leave. Then the victim comes back on a reading socket and takes its offline queue, and leaves again.
 *
 * Measured, from /proc (VmRSS) and /metrics, and printed: the node's resident memory at the start, its peak during
 * the flood, after both users left (once the node is idle and its RSS stopped falling), its peak while the queue
 * is handed over, and after that; the V8 heap and external memory at the flood's peak; the most bytes ever waiting
 * for one connection (`socp_unsent_bytes_max`) and frames in flight on one connection
 * (`socp_inflight_bytes_max`), sampled every 20 ms. No assertion: the numbers are for reading (a test for the
 * bound itself is tests/net/inbound_test.ts and tests/net/executor_test.ts).
 *
 * `NODE_ENV_JSON='{"MALLOC_MMAP_THRESHOLD_":"65536"}'` passes environment variables to the node process: with
 * glibc's mmap threshold fixed, the RSS kept after the flood falls from ~+60-90 MiB to ~+30 MiB, i.e. most of what
 * stays is native memory the allocator keeps after the churn of 200 KB buffers, not memory the node still holds.
 */
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { rssKiB, StalledPeer } from "../helpers/stalled_peer.ts";
import { RawPeer } from "../helpers/ws_peer.ts";
import { signPayload } from "../helpers/scripted_server.ts";

const DMS = Number(Deno.args[0] ?? 400);
const KB = Number(Deno.args[1] ?? 200);
const PACED = Number(Deno.args[2] ?? 10);
const BURST = 400;
const VICTIM = "41c71000-0000-4000-8000-0000000000b1";
const SENDER = "5e4de000-0000-4000-8000-0000000000b2";

async function metrics(n: NodeProcess): Promise<Map<string, number>> {
  const text = await (await fetch(`${n.http}/metrics`)).text();
  const m = new Map<string, number>();
  for (const [, k, v] of text.matchAll(/^(\w+) (\S+)$/gm)) m.set(k, Number(v));
  return m;
}
/** Threads of a process (from /proc). */
function threads(pid: number): number {
  return Number(/Threads:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1] ?? 0);
}
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
const mibB = (b: number) => `${(b / 1048576).toFixed(1)} MiB`;

/** Sample RSS and the gauges every 20 ms while `during` runs. */
async function sampled<T>(node: NodeProcess, during: () => Promise<T>) {
  const pid = node.child.pid;
  const s = { rss: 0, heap: 0, heapTotal: 0, external: 0, unsent: 0, inflight: 0, threads: 0 };
  let on = true;
  const loop = (async () => {
    while (on) {
      try {
        const rss = rssKiB(pid);
        s.threads = Math.max(s.threads, threads(pid));
        const m = await metrics(node);
        if (rss > s.rss) {
          s.rss = rss;
          s.heap = m.get("socp_memory_heap_used_bytes") ?? 0;
          s.heapTotal = m.get("socp_memory_heap_total_bytes") ?? 0;
          s.external = m.get("socp_memory_external_bytes") ?? 0;
        }
        s.unsent = Math.max(s.unsent, m.get("socp_unsent_bytes_max") ?? 0);
        s.inflight = Math.max(s.inflight, m.get("socp_inflight_bytes_max") ?? 0);
      } catch { /* the node is busy answering; sample again */ }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    return { result: await during(), peak: s };
  } finally {
    on = false;
    await loop;
  }
}

/** Wait until the node is idle and its RSS has stopped falling (five samples a second apart within 1%). */
async function settled(node: NodeProcess): Promise<number> {
  const pid = node.child.pid;
  const seen: number[] = [];
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const m = await metrics(node);
    if ((m.get("socp_connections") ?? 1) > 0 || (m.get("socp_effects_waiting") ?? 1) > 0) continue;
    seen.push(rssKiB(pid));
    const last = seen.slice(-5);
    if (last.length === 5 && Math.max(...last) - Math.min(...last) <= Math.max(...last) / 100) break;
  }
  return rssKiB(pid);
}

async function hello(p: { send(f: unknown): unknown }, id: string, pubkey: string) {
  await p.send({
    type: "USER_HELLO",
    from: id,
    to: "",
    ts: Date.now(),
    payload: { client: "b", pubkey },
    sig: "",
  });
}

async function scenario(burst: number, pauseMs: number): Promise<void> {
  const node = await NodeProcess.start({ env: JSON.parse(Deno.env.get("NODE_ENV_JSON") ?? "{}") });
  try {
    const [vk, sk] = await Promise.all([fixtureKey("user3"), fixtureKey("user4")]);
    const start = rssKiB(node.child.pid);
    const victim = await StalledPeer.open(node.port);
    await hello(victim, VICTIM, vk.publicKey);
    await victim.readUntil((f) => f.kind === "text" && /"msg_ref":"USER_HELLO"/.test(f.text), 30_000);
    const sender = await RawPeer.open(node.url);
    await hello(sender, SENDER, sk.publicKey);
    await sender.waitFor((f) => f.type === "ACK", 30_000, "sender ACK");

    let senderGone = false;
    sender.closed.then(() => senderGone = true);
    const ciphertext = "A".repeat(KB * 1000);
    const t0 = Date.now();
    const framesIn = (await metrics(node)).get("socp_frames_in_total") ?? 0;
    const flood = await sampled(node, async () => {
      for (let i = 0; i < DMS; i++) {
        if (i > 0 && i % burst === 0) {
          await new Promise((r) => setTimeout(r, pauseMs));
          // The most a sender can push without being shed: the next burst once the node took the last one in.
          for (let t = 0; t < 300 && (await metrics(node)).get("socp_inflight_bytes_max") !== 0; t++) {
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        sender.send({
          type: "MSG_DIRECT",
          from: SENDER,
          to: VICTIM,
          ts: Date.now() + i,
          payload: { ciphertext, sender_pub: sk.publicKey, content_sig: `AAAA${String(i).padStart(4, "0")}` },
          sig: "",
        });
      }
      // The flood is over once the node read every frame (or closed the sender) and carried out every effect.
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        const m = await metrics(node);
        if (
          ((m.get("socp_frames_in_total") ?? 0) >= framesIn + DMS || senderGone) &&
          m.get("socp_effects_waiting") === 0
        ) break;
      }
    });
    const floodMs = Date.now() - t0;
    const refused = sender.frames.filter((f) => f.type === "ERROR").map((f) => f.payload.code);
    const why = sender.frames.find((f) => f.type === "ERROR")?.payload.detail;
    if (why) console.log(`  first refusal: ${why}`);
    const closedByNode = senderGone; // before we close it ourselves
    sender.close();
    await sender.closed;
    // What the victim's socket took before the cut (it reads it now, up to the close frame).
    let taken = 0;
    await victim.readUntil((f) => {
      if (f.kind === "text" && f.text.includes('"USER_DELIVER"')) taken++;
      return f.kind === "close";
    }, 60_000).catch(() => null);
    victim.close();
    const afterBoth = await settled(node);

    // The victim comes back and reads its offline queue.
    const back = await RawPeer.open(node.url);
    const handover = await sampled(node, async () => {
      // The victim is registered now: its hello proves it holds the key (PROFILE §16).
      const payload = { client: "b", pubkey: vk.publicKey, ts: Date.now(), nonce: crypto.randomUUID() };
      back.send({
        type: "USER_HELLO",
        from: VICTIM,
        to: "",
        ts: Date.now(),
        payload,
        sig: await signPayload(vk, payload),
      });
      const deadline = Date.now() + 120_000;
      // Until the queue has arrived: no new DM for two seconds after the last.
      let last = -1;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2000));
        const n = back.count("USER_DELIVER");
        if (n === last) break;
        last = n;
      }
    });
    const delivered = back.count("USER_DELIVER");
    back.close();
    await back.closed;
    const end = await settled(node);

    const cut = node.logs.some((l) => /conn\.too_slow/.test(l));
    console.log(
      `hostile user: ${DMS} DMs of ${KB} KB to a user who never reads (bursts of ${burst}, each ${pauseMs} ms or more after the last was taken in)`,
    );
    console.log(
      `  flood took ${floodMs} ms; victim cut as too slow: ${cut}; ${taken} DMs reached its socket, ` +
        `${refused.length} refused (${
          [...new Set(refused)].join(",") || "-"
        }), sender closed by the node: ${closedByNode}`,
    );
    console.log(
      `  node RSS: start ${mib(start)}; flood peak ${mib(flood.peak.rss)} (+${
        mib(flood.peak.rss - start)
      }; ` +
        `heap ${mibB(flood.peak.heap)} used of ${mibB(flood.peak.heapTotal)}, external ${
          mibB(flood.peak.external)
        }); after both left ${mib(afterBoth)} ` +
        `(+${mib(afterBoth - start)})`,
    );
    console.log(
      `  most threads ${flood.peak.threads}; most bytes waiting for one connection ${
        mibB(flood.peak.unsent)
      }; most bytes in flight inbound on ` +
        `one connection ${mibB(flood.peak.inflight)}`,
    );
    console.log(
      `  queue hand-over: ${delivered} DMs; RSS peak ${mib(handover.peak.rss)} (+${
        mib(handover.peak.rss - start)
      } over start; heap ${mibB(handover.peak.heap)}); after ${mib(end)} (+${mib(end - start)})`,
    );
  } catch (e) {
    console.error(node.logs.slice(-30).join("\n"));
    throw e;
  } finally {
    await node.kill();
  }
}

// As the issue measured it (10 DMs per 100 ms, under the rate limit), then as one burst (the bucket holds 400).
await scenario(PACED, 100);
await scenario(BURST, 1000);
