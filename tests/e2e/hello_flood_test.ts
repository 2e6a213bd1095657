/**
 * End-to-end: a flood of USER_HELLOs from one address (issue 7 §2, hello cost). The node admits its burst, refuses
 * the rest with one clear ERROR each (signed once for all of them), keeps the refused connections open so they may
 * try again, and still carries a DM between two users.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

// A node process and 60 sockets live across awaits; all are closed in `finally`.
const opts = { sanitizeOps: false, sanitizeResources: false };
const user = (i: number) => `f100d000-0000-4000-8000-${String(i).padStart(12, "0")}`;

async function metric(n: NodeProcess, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(await (await fetch(`${n.http}/metrics`)).text());
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

Deno.test({
  name: "a hello flood from one address is admitted up to its burst, the rest refused clearly",
  ...opts,
}, async () => {
  const node = await NodeProcess.start({ env: { SOCP_HELLO_RATE: "2", SOCP_HELLO_BURST: "20" } });
  const peers: RawPeer[] = [];
  try {
    const pub = (await fixtureKey("user5")).publicKey;
    const sigs0 = await metric(node, "socp_signatures_total");
    for (let i = 0; i < 60; i++) peers.push(await RawPeer.open(node.url));
    const t0 = performance.now();
    peers.forEach((p, i) =>
      p.send({
        type: "USER_HELLO",
        from: user(i),
        to: "",
        ts: Date.now(),
        payload: { client: "f", pubkey: pub },
        sig: "",
      })
    );
    const answered = (p: RawPeer) => p.frames.some((f) => f.type === "ACK" || f.type === "ERROR");
    await until(() => peers.every(answered), "every hello answered", 30_000);
    const ms = performance.now() - t0;
    const admitted = peers.filter((p) =>
      p.frames.some((f) => f.type === "ACK" && f.payload.msg_ref === "USER_HELLO")
    );
    const refused = peers.filter((p) => p.frames.some((f) => f.type === "ERROR"));
    const sigs = (await metric(node, "socp_signatures_total")) - sigs0;
    console.log(
      `  hello flood: 60 hellos from one address answered in ${
        ms.toFixed(0)
      } ms: ${admitted.length} admitted, ` +
        `${refused.length} refused; ${sigs} RSA signatures made`,
    );
    // 20 at once, plus what 2/s refilled while the flood was answered.
    assert.ok(admitted.length >= 20 && admitted.length <= 20 + Math.ceil(ms / 500) + 1, `${admitted.length}`);
    assert.equal(admitted.length + refused.length, 60);
    for (const p of refused) {
      const e = p.frames.find((f) => f.type === "ERROR");
      assert.equal(e.payload.code, "UNKNOWN_TYPE");
      assert.match(e.payload.detail, /too many USER_HELLOs from your address/);
      assert.equal(p.count("ERROR"), 1, "one refusal, not a storm");
    }
    // Each admitted hello costs its own advert signature (and the channel key share); the refusals share one.
    assert.ok(sigs <= 2 * admitted.length + 3, `${sigs} signatures for ${admitted.length} admissions`);
    const hz = await (await fetch(`${node.http}/healthz`)).json();
    assert.equal(hz.users_online, admitted.length);

    // A refused connection is still open and is admitted once a token is back.
    const again = refused[0];
    const i = peers.indexOf(again);
    await new Promise((r) => setTimeout(r, 600));
    again.send({
      type: "USER_HELLO",
      from: user(i),
      to: "",
      ts: Date.now(),
      payload: { client: "f", pubkey: pub },
      sig: "",
    });
    await again.waitFor(
      (f) => f.type === "ACK" && f.payload.msg_ref === "USER_HELLO",
      10_000,
      "ACK on retry",
    );

    // Two users still talk (their hellos wait for tokens like anyone's from this address).
    await new Promise((r) => setTimeout(r, 1100));
    const alice = await SocpClient.connect(node.url, { userId: user(100), key: await fixtureKey("user1") });
    await new Promise((r) => setTimeout(r, 600));
    const bob = await SocpClient.connect(node.url, { userId: user(101), key: await fixtureKey("user2") });
    const got: ClientEvent[] = [...bob.drainBuffered()];
    bob.onEvent = (e) => got.push(e);
    await until(() => alice.directory.get(user(101)), "alice sees bob", 10_000);
    await alice.tell(user(101), "after the hello flood");
    const dm = await until(() => got.find((e) => e.kind === "dm"), "bob gets the DM", 10_000);
    assert.equal(dm.kind === "dm" && dm.text, "after the hello flood");
    alice.close();
    bob.close();
  } finally {
    for (const p of peers) p.close();
    await node.kill();
  }
});
