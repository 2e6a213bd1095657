/**
 * End-to-end: while frames flow the node runs a full collection per 8 MiB of frames (node.ts `busyCollector`: a
 * frame's text lives outside V8's small heap, so V8 alone collects late), and after the busy spell it runs one
 * memory-reducing collection once it goes quiet (`idleCollector`), instead of keeping the garbage in its resident
 * memory until the next busy spell. Both need the `--expose-gc` V8 flag the node ships with.
 */
import assert from "node:assert/strict";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

// A node process and sockets outlive single awaits here; each is closed in `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };
const ALICE = "a11ce000-0000-4000-8000-0000000000c1";
const BOB = "b0b00000-0000-4000-8000-0000000000c2";

/** Bytes received and not yet handled on the busiest connection (/metrics). */
async function inflight(n: NodeProcess): Promise<number> {
  const m = /^socp_inflight_bytes_max (\d+)$/m.exec(await (await fetch(`${n.http}/metrics`)).text());
  return m ? Number(m[1]) : NaN;
}

Deno.test(
  { name: "the node collects garbage while frames flow, and once more when it is quiet", ...opts },
  async () => {
    const node = await NodeProcess.start({ args: ["--log-level", "debug"] });
    const peers: RawPeer[] = [];
    try {
      const aliceKey = await fixtureKey("user1");
      const bobKey = await fixtureKey("user2");
      for (const [id, key] of [[ALICE, aliceKey], [BOB, bobKey]] as const) {
        const p = await RawPeer.open(node.url);
        peers.push(p);
        p.send({
          type: "USER_HELLO",
          from: id,
          to: "",
          ts: Date.now(),
          payload: { client: "t", pubkey: key.publicKey },
        });
        await p.waitFor((f) => f.type === "ACK", 10_000, "hello ACK");
      }
      const [alice, bob] = peers;
      // ~48 MB of DMs in and ~48 MB out: each frame is parsed, checked and re-signed, and all of it is garbage after.
      const ciphertext = "A".repeat(120_000);
      const n = 400;
      for (let i = 0; i < n; i++) {
        if (i % 25 === 24) {
          // Under the 100 frames/s rate limit, and each burst (3 MB) once the node took the last one in: a
          // connection may have at most 4 MiB in flight (lib/net/connection.ts).
          await new Promise((r) => setTimeout(r, 300));
          await until(async () => await inflight(node) === 0, "the node took the burst in");
        }
        alice.send({
          type: "MSG_DIRECT",
          from: ALICE,
          to: BOB,
          ts: Date.now() + i,
          payload: {
            ciphertext,
            sender_pub: aliceKey.publicKey,
            content_sig: `AAAA${String(i).padStart(4, "0")}`,
          },
          sig: "",
        });
      }
      await until(() => bob.count("USER_DELIVER") === n, `bob gets the ${n} DMs`, 60_000);
      const busy = node.logs.filter((l) => l.includes("memory.busy_collection")).length;
      // ~93 MiB of frames in and out by the end: one collection per 8 MiB would be 11, but the last ones may run
      // after Bob has his DMs (frames out are counted as the socket takes them); half of them at least by now.
      assert.ok(busy >= 5, `${busy} busy collections during the spell`);
      const line = await until(
        () => node.logs.find((l) => l.includes("memory.collected")),
        "an idle collection once the node is quiet",
        10_000,
      );
      console.log(`  ${busy} busy collections; ${line}`);
      const before = Number(/heap_before_mib=(\d+)/.exec(line)?.[1]);
      const after = Number(/heap_after_mib=(\d+)/.exec(line)?.[1]);
      const moved = Number(/frames_mib=(\d+)/.exec(line)?.[1]);
      assert.ok(moved >= 16, `it ran because ${moved} MiB of frames moved`);
      assert.ok(after <= before, `the heap went from ${before} to ${after} MiB`);
    } finally {
      for (const p of peers) p.close();
      await node.kill();
    }
  },
);
