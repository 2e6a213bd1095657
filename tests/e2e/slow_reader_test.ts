/**
 * End-to-end: a user that stops reading while another sends it 400 DMs of ~200 KB (issue 7 §2). The node cuts
 * the slow connection (1008 "too slow") once more than --max-unsent-bytes wait for it, its resident memory stays
 * bounded (read from /proc, printed), no DM is lost (those the cut connection never took wait in the offline
 * queue for the user's next hello), and a DM between two other users still goes through.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { rssKiB, StalledPeer } from "../helpers/stalled_peer.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";
import { signPayload } from "../helpers/scripted_server.ts";

// Node processes and sockets outlive single awaits here; each is closed in `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };
const SLOW = "5104e000-0000-4000-8000-0000000000a1";
const SENDER = "5e4de000-0000-4000-8000-0000000000a2";
const ALICE = "a11ce000-0000-4000-8000-0000000000a3";
const BOB = "b0b00000-0000-4000-8000-0000000000a4";

async function metric(n: NodeProcess, name: string): Promise<number> {
  const text = await (await fetch(`${n.http}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

Deno.test({
  name: "a user that stops reading is cut as too slow and the node's memory stays bounded",
  ...opts,
}, async () => {
  const node = await NodeProcess.start({
    env: Deno.env.get("BREAK") ? { SOCP_MAX_UNSENT_BYTES: "4294967296" } : {},
  });
  const pid = node.child.pid;
  let slow: StalledPeer | undefined;
  let sender: RawPeer | undefined;
  try {
    const slowKey = await fixtureKey("user3");
    slow = await StalledPeer.open(node.port);
    await slow.send({
      type: "USER_HELLO",
      from: SLOW,
      to: "",
      ts: Date.now(),
      payload: { client: "slow", pubkey: slowKey.publicKey },
      sig: "",
    });
    // Read until the hello is accepted, then stop reading for good.
    const ack = await slow.readUntil(
      (f) => f.kind === "text" && /"msg_ref":"USER_HELLO"/.test(f.text),
      10_000,
    );
    assert.ok(ack, "the slow user's hello was accepted");

    sender = await RawPeer.open(node.url);
    const senderKey = await fixtureKey("user4");
    sender.send({
      type: "USER_HELLO",
      from: SENDER,
      to: "",
      ts: Date.now(),
      payload: { client: "t", pubkey: senderKey.publicKey },
      sig: "",
    });
    await sender.waitFor((f) => f.type === "ACK", 10_000, "sender ACK");

    const before = rssKiB(pid);
    let peak = before;
    let unsentPeak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        try {
          peak = Math.max(peak, rssKiB(pid));
          unsentPeak = Math.max(unsentPeak, await metric(node, "socp_unsent_bytes_max"));
        } catch { /* process gone: the test fails below */ }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const ciphertext = "A".repeat(200_000);
    const t0 = Date.now();
    try {
      // 400 DMs in bursts of 10 (2 MB), each burst once the node has taken the last one in (nothing in flight on
      // the sender's connection: it sheds what is past 4 MiB in flight) and at least 100 ms after it (the
      // per-connection rate limit is 100 frames/s).
      for (let i = 0; i < 400; i++) {
        if (i % 10 === 0) {
          await new Promise((r) => setTimeout(r, 100));
          await until(
            async () => await metric(node, "socp_inflight_bytes_max") === 0,
            "the node took the burst in",
          );
        }
        sender.send({
          type: "MSG_DIRECT",
          from: SENDER,
          to: SLOW,
          ts: Date.now() + i, // distinct payloads: the seen cache drops repeats, whatever their ts (PROFILE §16)
          payload: {
            ciphertext,
            sender_pub: senderKey.publicKey,
            content_sig: `AAAA${String(i).padStart(4, "0")}`,
          },
          sig: "",
        });
      }
      await until(
        () => node.logs.some((l) => /conn\.too_slow/.test(l)),
        "the node cuts the slow user",
        30_000,
      );
      // DMs after the cut are queued for the (now offline) user, and the sender hears so (ACK; live delivery has none).
      await until(() => sender!.count("ACK") >= 2, "DMs after the cut are queued and ACKed", 30_000);
      // Sampling goes on until the node has taken in every frame (two hellos and the 400 DMs) and carried out every
      // effect: the peak covers all the work the DMs caused.
      await until(
        async () => {
          const taken = await metric(node, "socp_frames_in_total") +
            await metric(node, "socp_frames_shed_total");
          return taken >= 402 && await metric(node, "socp_effects_waiting") === 0 &&
            await metric(node, "socp_inflight_bytes_max") === 0;
        },
        "the node has handled every DM",
        30_000,
      );
    } finally {
      sampling = false;
      await sampler;
    }
    const after = rssKiB(pid);
    const growthMiB = (peak - before) / 1024;
    console.log(
      `  slow reader: 400 DMs of 200 KB sent in ${Date.now() - t0} ms; node RSS ${
        (before / 1024).toFixed(0)
      } MiB ` +
        `before, peak ${(peak / 1024).toFixed(0)} MiB (+${growthMiB.toFixed(0)} MiB), ${
          (after / 1024).toFixed(0)
        } MiB after`,
    );
    // The frames themselves are 80 MB; without the bound the node grew by 180-270 MB. With it, what waits for the slow
    // user is at most 8 MiB (+ one WebSocket buffer); the rest is the sender's frames passing through.
    assert.ok(growthMiB < 200, `node RSS grew by ${growthMiB.toFixed(0)} MiB`);
    // The node's own account: the most ever waiting for one connection stayed near the 8 MiB bound (it may pass
    // it while the stall is being confirmed, a quarter second at the sender's rate); without the bound, all 80 MB.
    console.log(
      `  most bytes waiting for one connection (sampled from /metrics): ${
        (unsentPeak / 1048576).toFixed(1)
      } MiB`,
    );
    assert.ok(unsentPeak <= 16 * 1048576, `${unsentPeak} bytes waited for one connection`);
    assert.equal(await metric(node, "socp_connections_too_slow_total"), 1);
    const hz = await (await fetch(`${node.http}/healthz`)).json();
    assert.equal(hz.users_online, 1, "the slow user is offline; the sender is online");

    // The slow user reads again: what was already in flight, then the close frame with 1008 "too slow".
    const seen = new Map<number, string>(); // DM (by its ts) -> where the slow user got it
    const dmTs = (text: string) => {
      const f = JSON.parse(text);
      return f.type === "USER_DELIVER" ? f.ts as number : undefined;
    };
    const close = await slow.readUntil((f) => {
      if (f.kind === "text") {
        const ts = dmTs(f.text);
        if (ts !== undefined) seen.set(ts, "old connection");
      }
      return f.kind === "close";
    }, 30_000);
    assert.deepEqual(close, { kind: "close", code: 1008, reason: "too slow" });
    const inFlight = seen.size;
    console.log(
      `  the slow user read ${
        (slow.bytesRead / 1048576).toFixed(1)
      } MiB (${inFlight} DMs) before the close frame`,
    );
    slow.close();
    slow = undefined;

    // No DM is lost: those that never reached the cut connection, and those sent after the cut, wait in the
    // offline queue and arrive at the next hello, each exactly once.
    const back = await RawPeer.open(node.url);
    try {
      // The user is registered now: the hello proves it holds the key (PROFILE §16).
      const payload = {
        client: "slow",
        pubkey: slowKey.publicKey,
        ts: Date.now(),
        nonce: crypto.randomUUID(),
      };
      back.send({
        type: "USER_HELLO",
        from: SLOW,
        to: "",
        ts: Date.now(),
        payload,
        sig: await signPayload(slowKey, payload),
      });
      await until(() => back.count("USER_DELIVER") >= 400 - inFlight, "the queued DMs arrive", 60_000);
      // One more DM, sent now: it reaches the user after everything already on its way to this connection, so once
      // it is there, an extra (duplicate) copy of an older DM would be too.
      sender!.send({
        type: "MSG_DIRECT",
        from: SENDER,
        to: SLOW,
        ts: Date.now(),
        payload: { ciphertext: "AAAA", sender_pub: senderKey.publicKey, content_sig: "MARK" },
        sig: "",
      });
      await back.waitFor(
        (f) => f.type === "USER_DELIVER" && f.payload.content_sig === "MARK",
        30_000,
        "marker",
      );
      const dmsIn = back.frames.filter((f) => f.type === "USER_DELIVER" && f.payload.content_sig !== "MARK");
      for (const f of dmsIn) {
        assert.ok(!seen.has(f.ts), `DM ${f.ts} arrived twice (${seen.get(f.ts)} and after the next hello)`);
        seen.set(f.ts, "queue");
      }
      console.log(`  after the next hello the slow user got ${seen.size - inFlight} queued DMs`);
      assert.equal(seen.size, 400, "every DM reached the slow user exactly once");
    } finally {
      back.close();
      await back.closed;
    }

    // Two other users still exchange a DM.
    const alice = await SocpClient.connect(node.url, { userId: ALICE, key: await fixtureKey("user1") });
    const bob = await SocpClient.connect(node.url, { userId: BOB, key: await fixtureKey("user2") });
    const got: ClientEvent[] = [...bob.drainBuffered()];
    bob.onEvent = (e) => got.push(e);
    await until(() => alice.directory.get(BOB), "alice sees bob", 10_000);
    await alice.tell(BOB, "after the flood");
    const dm = await until(() => got.find((e) => e.kind === "dm"), "bob gets the DM", 10_000);
    assert.equal(dm.kind === "dm" && dm.text, "after the flood");
    alice.close();
    bob.close();
  } finally {
    slow?.close();
    sender?.close();
    await node.kill();
  }
});
