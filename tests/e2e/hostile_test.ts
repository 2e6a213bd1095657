/**
 * End-to-end: the frames that once ended the process (issue 7 §1) sent to a real node, each as the first frame of
 * a fresh connection. Each gets one ERROR UNKNOWN_TYPE, and the node still carries a DM between two users.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const U = "a11ce000-0000-4000-8000-00000000f001";
const ALICE = "a11ce000-0000-4000-8000-00000000f0a1";
const BOB = "b0b00000-0000-4000-8000-00000000f0b2";

function crashers(now: number): [string, string][] {
  const deep = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n);
  return [
    ["1e999 in a HEARTBEAT", `{"type":"HEARTBEAT","from":"x","to":"y","ts":${now},"payload":{"a":1e999}}`],
    [
      "-1e400 in a MSG_DIRECT",
      `{"type":"MSG_DIRECT","from":"${U}","to":"${U}","ts":${now},"payload":{"ciphertext":"x","sender_pub":"p","content_sig":"s","n":-1e400}}`,
    ],
    [
      "meta.age = 1e400 in a USER_HELLO",
      `{"type":"USER_HELLO","from":"${U}","to":"","ts":${now},"payload":{"client":"c","pubkey":"k","meta":{"age":1e400}}}`,
    ],
    [
      "3,000 nested objects in USER_HELLO meta",
      `{"type":"USER_HELLO","from":"${U}","to":"","ts":${now},"payload":{"client":"c","pubkey":"k","meta":${
        deep(3000)
      }}}`,
    ],
    [
      "10,000-deep arrays in a MSG_DIRECT",
      `{"type":"MSG_DIRECT","from":"${U}","to":"${U}","ts":${now},"payload":{"ciphertext":"x","sender_pub":"p","content_sig":"s","x":${
        "[".repeat(10_000) + "]".repeat(10_000)
      }}}`,
    ],
    [
      "SERVER_WELCOME on an inbound connection",
      JSON.stringify({
        type: "SERVER_WELCOME",
        from: "x",
        to: "y",
        ts: now,
        payload: { assigned_id: "x", servers: [], clients: [] },
        sig: "AAAA",
      }),
    ],
  ];
}

Deno.test(
  { name: "crash frames get one ERROR UNKNOWN_TYPE each and the node keeps serving DMs", ...opts },
  async () => {
    await using node = await NodeProcess.start();
    const probeKey = await fixtureKey("user5");
    for (const [what, text] of crashers(Date.now())) {
      const p = await RawPeer.open(node.url);
      p.send(text);
      const err = await p.error("UNKNOWN_TYPE", 5000).catch((e) => {
        throw new Error(`${what}: ${e.message}\n${node.logs.slice(-5).join("\n")}`);
      });
      assert.ok(typeof err.payload.detail === "string" && err.payload.detail.length > 0, what);
      // The connection is still open for a well-formed frame: a hello, answered after any further reply to the
      // crash frame (a connection's frames are handled and answered in order). One refusal, not a storm.
      p.send({
        type: "USER_HELLO",
        from: crypto.randomUUID(),
        to: "",
        ts: Date.now(),
        payload: { client: "t", pubkey: probeKey.publicKey },
        sig: "",
      });
      await p.waitFor((f) => f.type === "ACK", 10_000, `${what}: the hello after it is accepted`);
      assert.equal(p.count("ERROR"), 1, what);
      p.close();
    }
    const alice = await SocpClient.connect(node.url, { userId: ALICE, key: await fixtureKey("user1") });
    const bob = await SocpClient.connect(node.url, { userId: BOB, key: await fixtureKey("user2") });
    const got: ClientEvent[] = [...bob.drainBuffered()];
    bob.onEvent = (e) => got.push(e);
    await until(() => alice.directory.get(BOB), "alice sees bob", 10_000);
    await alice.tell(BOB, "still here");
    const dm = await until(() => got.find((e) => e.kind === "dm"), "bob gets the DM", 10_000);
    assert.equal(dm.kind === "dm" && dm.text, "still here");
    alice.close();
    bob.close();
    assert.ok(
      !node.logs.some((l) => /Uncaught|RangeError|event\.failed|frame\.failed/.test(l)),
      node.logs.join("\n"),
    );
  },
);
