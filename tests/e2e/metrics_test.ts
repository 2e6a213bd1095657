/**
 * End-to-end: /metrics and /healthz report what happened. A fresh node, two users, DMs, a refused frame and a
 * signed hello; every counter is checked against what the clients saw (frames out = frames the clients received,
 * errors = ERRORs received, verifications = signed frames sent, users and connections as opened and closed).
 */
import assert from "node:assert/strict";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

// A node process and sockets live across awaits; all are closed in `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };
const ALICE = "a11ce000-0000-4000-8000-0000000e0001";
const BOB = "b0b00000-0000-4000-8000-0000000e0002";

async function metrics(n: NodeProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${n.http}/metrics`)).text();
  return Object.fromEntries(
    text.split("\n").filter((l) => l && !l.startsWith("#")).map((
      l,
    ) => [l.split(" ")[0], Number(l.split(" ")[1])]),
  );
}

Deno.test({ name: "/metrics and /healthz count what happened", ...opts }, async () => {
  await using node = await NodeProcess.start();
  const peers: RawPeer[] = [];
  try {
    const m0 = await metrics(node);
    assert.equal(m0.socp_users_online, 0);
    assert.equal(m0.socp_connections, 0);
    const aKey = await fixtureKey("user1");
    const bKey = await fixtureKey("user2");
    const alice = await RawPeer.open(node.url);
    const bob = await RawPeer.open(node.url);
    peers.push(alice, bob);
    alice.send({
      type: "USER_HELLO",
      from: ALICE,
      to: "",
      ts: Date.now(),
      payload: { pubkey: aKey.publicKey },
    });
    await alice.waitFor((f) => f.type === "ACK", 10_000, "alice ACK");
    // Bob's hello is signed: one verification.
    const bp = { pubkey: bKey.publicKey };
    const sig = await bKey.sign(new TextEncoder().encode(canonicalJson(bp)));
    bob.send({ type: "USER_HELLO", from: BOB, to: "", ts: Date.now(), payload: bp, sig });
    await bob.waitFor((f) => f.type === "ACK", 10_000, "bob ACK");
    await alice.waitFor(
      (f) => f.type === "USER_ADVERTISE" && f.payload.user_id === BOB,
      10_000,
      "bob's advert",
    );
    const hz = await (await fetch(`${node.http}/healthz`)).json();
    assert.equal(hz.users_online, 2);
    assert.equal(hz.servers_linked, 0);

    for (let i = 0; i < 3; i++) {
      alice.send({
        type: "MSG_DIRECT",
        from: ALICE,
        to: BOB,
        ts: Date.now() + i,
        payload: { ciphertext: "AAAA" + i, sender_pub: aKey.publicKey, content_sig: "AAAA" },
      });
    }
    alice.send("not json"); // one refusal
    await until(() => bob.count("USER_DELIVER") === 3, "3 DMs delivered", 10_000);
    await alice.error("UNKNOWN_TYPE", 10_000);
    // Every frame the node counts as sent has arrived (none still on its way): the counters are read from then on.
    const m1 = await until(async () => {
      const m = await metrics(node);
      const out = m.socp_frames_out_total - m0.socp_frames_out_total;
      return out === alice.frames.length + bob.frames.length && m;
    }, "frames out = frames received");
    const d = (k: string) => m1[k] - m0[k];
    assert.equal(m1.socp_users_online, 2);
    assert.equal(m1.socp_connections, 2);
    assert.equal(d("socp_connections_total"), 2);
    assert.equal(d("socp_frames_in_total"), 2 + 3 + 1, "2 hellos, 3 DMs, 1 malformed frame");
    assert.equal(d("socp_errors_sent_total"), alice.count("ERROR") + bob.count("ERROR"));
    assert.equal(alice.count("ERROR"), 1);
    assert.equal(d("socp_verifications_total"), 1, "one signed frame was received");
    assert.ok(d("socp_signatures_total") >= 1 && d("socp_signatures_total") <= d("socp_frames_out_total"));
    assert.equal(d("socp_frames_shed_total"), 0);
    assert.equal(d("socp_connections_too_slow_total"), 0);
    assert.ok(m1.socp_seen_cache_entries >= 5, "hellos and DMs are remembered as seen");

    alice.close();
    await until(
      async () => (await (await fetch(`${node.http}/healthz`)).json()).users_online === 1,
      "alice gone",
    );
    const m2 = await metrics(node);
    assert.equal(m2.socp_connections, 1);
    assert.equal(m2.socp_users_online, 1);
    assert.ok(bob.frames.some((f) => f.type === "USER_REMOVE" && f.payload.user_id === ALICE));
  } finally {
    for (const p of peers) p.close();
  }
});
