/**
 * End-to-end: after a busy spell the node collects its garbage once it goes quiet (node.ts `idleCollector`,
 * enabled by the `--expose-gc` V8 flag the node ships with), instead of keeping it in the heap and in its resident
 * memory until the next busy spell.
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

Deno.test({ name: "the node collects the garbage of a busy spell once it is quiet", ...opts }, async () => {
  const node = await NodeProcess.start();
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
    // ~48 MB of DMs through the node: each frame is parsed, checked and re-signed, and all of it is garbage after.
    // V8 may collect some of it by itself during the spell (then there is less for the idle collection to do), so
    // up to three spells are run until the node's idle collection reports; without it, none ever does.
    const ciphertext = "A".repeat(120_000);
    const n = 400;
    let line: string | undefined;
    for (let spell = 0; spell < 3 && !line; spell++) {
      const got = bob.count("USER_DELIVER");
      for (let i = 0; i < n; i++) {
        if (i % 25 === 24) {
          // Under the 100 frames/s rate limit, and each burst (3 MB) once the node took the last one in: a
          // connection may have at most 4 MiB in flight (lib/net/inbound.ts).
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
            content_sig: `AAA${spell}${String(i).padStart(4, "0")}`,
          },
          sig: "",
        });
      }
      await until(() => bob.count("USER_DELIVER") === got + n, `bob gets the ${n} DMs`, 60_000);
      line = await until(
        () => node.logs.find((l) => l.includes("memory.collected")),
        "an idle collection once the node is quiet",
        10_000,
      ).catch(() => undefined);
    }
    assert.ok(line, "an idle collection once the node is quiet, after one of three busy spells");
    console.log(`  ${line}`);
    const before = Number(/heap_before_mib=(\d+)/.exec(line)?.[1]);
    const after = Number(/heap_after_mib=(\d+)/.exec(line)?.[1]);
    assert.ok(before - after >= 16, `the heap went from ${before} to ${after} MiB`);
  } finally {
    for (const p of peers) p.close();
    await node.kill();
  }
});
