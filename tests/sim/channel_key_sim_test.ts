/**
 * The simulation with the real channel-key holder (lib/net/channel_key.ts) and its crypto instead of the
 * simulated one: the first node holds the public channel's key (sealed in its database), the others adopt it
 * from the RSA-OAEP wraps the first one's welcomes carry, seal it at rest (HKDF under the node's random key), and
 * sign key shares with it.
 * The crypto runs in real time while the simulated clock waits (Sim.realSettle), so a seed still replays
 * exactly. (Calm seeds only: RSA-4096 makes each run take about a second; the storms use the simulated
 * holder.)
 */
import assert from "node:assert/strict";
import { fixtureKey, TEST_NODE_SECRET } from "../helpers/keys.ts";
import { openPrivateKey, sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { PrivateKey } from "../../lib/crypto/rsa.ts";
import { sha256, toHex } from "../../lib/protocol/sha256.ts";
import { CALM, check, runScenario } from "./scenario.ts";
import type { Sim } from "./sim.ts";

const NAMES = ["user1", "user2", "user3", "user4", "user5", "user6"];
const privateKeys = new Map<string, PrivateKey>();
for (const n of NAMES) {
  const k = await fixtureKey(n);
  privateKeys.set(k.publicKey, k);
}
/** The channel key: a fixture key no node uses as its identity (nodes use user1..user4). */
const channelKey = await fixtureKey("user6");
const secret = TEST_NODE_SECRET;
const sealed = await sealPrivateKey(await channelKey.exportPkcs8(), secret);

/** The fields whose bytes the real crypto randomizes. */
const RANDOMIZED = /"(wrapped_key|wrapped_public_channel_key|content_sig)":"[^"]*"/g;

async function run(seed: number): Promise<{ sim: Sim; trace: string[] }> {
  const trace: string[] = [];
  // A smaller calm network than CALM (three nodes, four users, 10 s of chatter): the real crypto is the cost.
  const sim = await runScenario(seed, { ...CALM, nodes: 3, users: 4, chaosMs: 10_000 }, (s) => {
    s.trace = trace;
    s.realChannel = { privateKeys, channelKey, sealed, secret };
  });
  assert.deepEqual(await check(sim), [], `seed ${seed}`);
  return { sim, trace };
}

Deno.test("simulation with the real channel-key holder: every node adopts the channel key, sealed at rest; a seed replays", async () => {
  const a = await run(1);
  for (const n of a.sim.nodes) {
    assert.equal(n.state?.channel?.creatorPub, channelKey.publicKey, `node ${n.index} holds the channel`);
    const row = n.db.getChannelKey();
    assert.ok(row, `node ${n.index} keeps the channel key`);
    // Sealed with the real key file format: it opens with the secret, to the channel's private key.
    const key = await PrivateKey.fromPkcs8(await openPrivateKey(row.sealed, secret));
    assert.equal(key.publicKey, channelKey.publicKey);
  }
  // The nodes other than the first adopted the key from RSA-OAEP wraps (not a copy of the first one's row).
  assert.ok(a.sim.nodes.slice(1).every((n) => n.db.getChannelKey()!.sealed.salt !== sealed.salt));
  // The same seed again: the same frames at the same simulated times, but for the bytes RSA-OAEP and RSA-PSS
  // randomize (the wraps and the key shares' signatures differ from run to run, as they must).
  const b = await run(1);
  const masked = (trace: string[]) =>
    toHex(sha256(trace.map((l) => l.replace(RANDOMIZED, '"$1":"…"')).join("\n")));
  assert.equal(b.trace.length, a.trace.length);
  assert.notEqual(toHex(sha256(b.trace.join("\n"))), toHex(sha256(a.trace.join("\n"))), "fresh wraps");
  assert.equal(masked(b.trace), masked(a.trace));
});
