/**
 * Benchmark (not a test): fuzzed frames into a real node process, and what is left of them in its memory.
 *
 *   deno run -A tests/bench/fuzz_node.ts [frames=30000]     (also run by `deno task bench`)
 *
 * Sends fuzzed frames (tests/helpers/fuzz.ts), nine per connection (fewer than the 10 strikes that close one), over
 * 16 connections at a time. Prints frames/s, the node's resident memory (VmRSS from /proc) and V8 heap (from /metrics)
 * before, right after, and 10 s after the run, and the state gauges (/metrics): memory the heap gives back is
 * garbage; gauges or heap that stay up are state that leaked. The node must still be serving (checked).
 */
import fc from "npm:fast-check@4.10.2";
import { fixtureKey } from "../helpers/keys.ts";
import { type FuzzKeys, stepArb } from "../helpers/fuzz.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { rssKiB } from "../helpers/stalled_peer.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

const total = Number(Deno.args[0] ?? 30_000);
const keys: FuzzKeys = {
  user: (await fixtureKey("user1")).publicKey,
  server: (await fixtureKey("user4")).publicKey,
};

async function metrics(n: NodeProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${n.http}/metrics`)).text();
  return Object.fromEntries(
    text.split("\n").filter((l) => l && !l.startsWith("#")).map((
      l,
    ) => [l.split(" ")[0], Number(l.split(" ")[1])]),
  );
}
const mib = (b: number) => (b / 1048576).toFixed(1);

const node = await NodeProcess.start({ env: { SOCP_RATE_PER_SEC: "1000000", SOCP_RATE_BURST: "1000000" } });
try {
  const texts: string[] = [];
  for (let seed = 1; texts.length < total; seed++) {
    for (const s of fc.sample(stepArb(keys), { seed, numRuns: 1000 })) {
      if (s.kind === "frame") texts.push(s.frame.text.replace(/1700000000000/g, String(Date.now())));
    }
  }
  texts.length = total;
  await new Promise((r) => setTimeout(r, 1000));
  const m0 = await metrics(node);
  const rss0 = rssKiB(node.child.pid);
  let next = 0;
  let opened = 0;
  const t0 = performance.now();
  // Nine frames per connection (fewer than the 10 strikes that close one), then the next connection: every frame
  // reaches the node's pipeline instead of being dropped on a closing socket.
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < texts.length) {
      const p = await RawPeer.open(node.url);
      opened++;
      for (let i = 0; i < 9 && next < texts.length; i++) p.send(texts[next++]);
      p.send({ type: "CTRL_CLOSE" }); // the node closes once it has handled the frames before it
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([p.closed, new Promise((r) => timer = setTimeout(r, 5000))]);
      clearTimeout(timer);
      p.close();
      await p.closed;
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  const rss1 = rssKiB(node.child.pid);
  const m1 = await metrics(node);
  await new Promise((r) => setTimeout(r, 10_000));
  const rss2 = rssKiB(node.child.pid);
  const m2 = await metrics(node);
  const hz = await (await fetch(`${node.http}/healthz`)).json();
  console.log(
    `fuzz into a real node: ${total} frames over ${opened} connections in ${secs.toFixed(1)} s = ${
      (total / secs).toFixed(0)
    } frames/s; node still serving: ${hz.status}`,
  );
  console.log(
    `  frames in (counted by the node): ${m1.socp_frames_in_total - m0.socp_frames_in_total}, errors sent: ${
      m1.socp_errors_sent_total - m0.socp_errors_sent_total
    }`,
  );
  console.log(
    `  RSS MiB: before ${mib(rss0 * 1024)}, after ${mib(rss1 * 1024)}, 10 s later ${mib(rss2 * 1024)}`,
  );
  console.log(
    `  heap used MiB: before ${mib(m0.socp_memory_heap_used_bytes)}, after ${
      mib(m1.socp_memory_heap_used_bytes)
    }, 10 s later ${mib(m2.socp_memory_heap_used_bytes)} (heap total ${
      mib(m2.socp_memory_heap_total_bytes)
    })`,
  );
  console.log(
    `  state 10 s later: connections ${m2.socp_connections}, users online ${m2.socp_users_online}, seen cache ${m2.socp_seen_cache_entries}`,
  );
} finally {
  await node.kill();
}
