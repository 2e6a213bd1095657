/**
 * Federation under a simulated network, one scenario per seed. After chaos (users coming and going, DMs, broken
 * links, duplicated and reordered frames, crashed nodes) and a healing period, these must hold:
 * - the servers that are up form a full mesh;
 * - presence converges: every server and every online user knows exactly who is online, and where;
 * - every DM sent when the network is calm arrives exactly once; no DM ever arrives twice, altered, or to the
 *   wrong user;
 * - gossip does not loop: once quiet, servers exchange nothing but heartbeats.
 * With a foreign server in the network (tests/sim/foreign.ts: echoes, "key1", JOIN only, no ACK, no HEARTBEAT,
 * other channel shapes) the same must hold, and our nodes never send it an ERROR other than USER_NOT_FOUND.
 */
import assert from "node:assert/strict";
import { CALM, check, runScenario, type Scenario, STORE_STORM, STORM } from "./scenario.ts";

Deno.test("simulation: a calm network converges and delivers (seeds 1-5)", async () => {
  for (let seed = 1; seed <= 5; seed++) {
    assert.deepEqual(await check(await runScenario(seed, CALM)), [], `seed ${seed}`);
  }
});

const SEEDS = Number(Deno.env.get("SOCP_SIM_SEEDS") ?? 20);
Deno.test(`simulation: ${SEEDS} seeds of broken links, duplicates, reordering and crashes`, async () => {
  const failed: string[] = [];
  let cuts = 0, buffered = 0;
  for (let seed = 100; seed < 100 + SEEDS; seed++) {
    const sim = await runScenario(seed, STORM);
    const problems = await check(sim);
    cuts += sim.nodes.reduce((n, x) => n + x.counters.tooSlow, 0);
    buffered = Math.max(buffered, sim.maxBuffered);
    if (problems.length) failed.push(`seed ${seed}: ${problems.slice(0, 3).join(" | ")}`);
  }
  assert.deepEqual(failed, []);
  // Stalled readers filled their node's socket buffer past the high-water mark (16 KiB at maxUnsentBytes 48 KiB,
  // so drain waited) and were cut as too slow (their connections lingered until they read again).
  assert.ok(buffered > 16 * 1024, `largest socket buffer ${buffered}`);
  assert.ok(cuts > 0, "no reader was cut as too slow");
});

Deno.test(`simulation: ${Math.ceil(SEEDS / 4)} seeds of the storm with failing store writes (crash-only nodes) and client-core users`, async () => {
  const failed: string[] = [];
  let failures = 0, cuts = 0;
  for (let seed = 300; seed < 300 + Math.ceil(SEEDS / 4); seed++) {
    const sim = await runScenario(seed, STORE_STORM);
    const problems = await check(sim);
    failures += sim.storeFailures;
    cuts += sim.nodes.reduce((n, x) => n + x.counters.tooSlow, 0);
    if (problems.length) failed.push(`seed ${seed}: ${problems.slice(0, 3).join(" | ")}`);
  }
  assert.deepEqual(failed, []);
  // The faults ran: writes failed (each stopping its node) and stalled readers were cut as too slow.
  assert.ok(failures > 0, "no store write failed");
  assert.ok(cuts > 0, "no reader was cut as too slow");
});

Deno.test(`simulation: ${Math.ceil(SEEDS / 4)} seeds of the storm with failing store reads (crash-only nodes) and client-core users`, async () => {
  // A read the node acts on (queued or outbox row ids, a hand-over's frames) fails now and then: the node stops
  // as on a failed write and restarts from its database; every DM still arrives once.
  const sc: Scenario = { ...STORE_STORM, faults: { ...STORE_STORM.faults, storeFail: 0, readFail: 0.05 } };
  const failed: string[] = [];
  let reads = 0;
  for (let seed = 400; seed < 400 + Math.ceil(SEEDS / 4); seed++) {
    const sim = await runScenario(seed, sc);
    const problems = await check(sim);
    reads += sim.failedReads;
    if (problems.length) failed.push(`seed ${seed}: ${problems.slice(0, 3).join(" | ")}`);
  }
  assert.deepEqual(failed, []);
  assert.ok(reads > 0, "no store read failed");
});

// Seeds that once failed, kept as named tests.
Deno.test("simulation seed 302 (store failures): a DM whose enqueue failed is not taken for a duplicate after the restart", async () => {
  // The seen-cache key of a SERVER_DELIVER was written at the end of a turn while the DM's enqueue waited for the
  // next turn; the enqueue failed, the node stopped, and after its restart the sender's server's resend was a
  // "duplicate": ACKed and dropped, the DM lost. Seen keys are now written once the backlog before them has run.
  // (Found with stalled readers twice as frequent as STORM has them now, and each socket drained on a tick of
  // its own: the same run is kept here. Without the fix it lost dm-302-352 until the executor was split into
  // named parts (commit f51dd25 shows it); since then the run no longer reaches that interleaving, and it stays
  // as a seed that once failed.)
  const sc: Scenario = { ...STORE_STORM, faults: { ...STORE_STORM.faults, stall: 0.01 } };
  assert.deepEqual(await check(await runScenario(302, sc, (sim) => sim.drainEachSocket = true)), []);
});

Deno.test({
  name:
    "simulation seed 108 (store failures): a DM queued just before its node stopped on a failed write is not queued again",
  // The reducer's `enqueue` and `acceptRef` were two writes. When the second failed the node stopped with the DM
  // queued but its msg_ref not remembered; after the restart the sender's server resent it (it had no ACK), the
  // node queued the DM again, and the user got it twice (a client's dedupe hid it). A step's persist effects are
  // now one transaction (lib/net/persist.ts, groupPersists). Found as seed 116; since the simulated nodes tick at
  // the reducer's deadlines, seed 108 is one that loses it without the transaction (as do 109 and 113).
  fn: async () => {
    // The storm with failing writes and stalled readers as it was when found (no client-core users).
    const sc: Scenario = { ...STORM, faults: { ...STORM.faults, stall: 0.01, storeFail: 0.002 } };
    const sim = await runScenario(108, sc);
    sim.dedupeAtClient = false;
    assert.deepEqual(await check(sim), []);
  },
});

Deno.test("simulation seed 103: a restarted node reconnects to every server it had pinned, not only its introducer", async () => {
  assert.deepEqual(await check(await runScenario(103, STORM)), []);
});

Deno.test("simulation seeds 124, 136, 149: presence converges after restarts under held-back frames", async () => {
  for (const seed of [124, 136, 149]) {
    assert.deepEqual(await check(await runScenario(seed, STORM)), [], `seed ${seed}`);
  }
});

Deno.test("simulation seeds 169, 201: a resent outbox DM is not delivered twice by a home server that restarted", async () => {
  for (const seed of [169, 201]) {
    assert.deepEqual(await check(await runScenario(seed, STORM)), [], `seed ${seed}`);
  }
});

// (Seed 325 showed this until dialed links came up only at the peer's first frame, which shifted every later
// event; then seed 360, until the simulation ran the node's executor, which shifted them again; then seed 569,
// until the simulated signer answered at once and effects were spread over turns; then seed 690, until the
// simulated nodes ticked at the reducer's deadlines instead of every 250 ms; seed 600 shows it now.)
Deno.test("simulation seed 600: an accepted DM lost only at the last hop (recipient left mid-delivery) is reported as such", async () => {
  const sim = await runScenario(600, STORM);
  assert.deepEqual(await check(sim), []);
  assert.ok(sim.lostAtLastHop.size >= 1);
});

const FOREIGN_CALM: Scenario = { ...CALM, foreignUsers: 2 };
// Without stalled readers (STORM has them): the foreign server's behaviours are what this storm is about.
const FOREIGN_STORM: Scenario = { ...STORM, faults: { ...STORM.faults, stall: 0 }, foreignUsers: 3 };

Deno.test("simulation with a foreign server (echoes, key1, JOIN only, no ACK, pings only): calm seeds 1-5", async () => {
  for (let seed = 1; seed <= 5; seed++) {
    const sim = await runScenario(seed, FOREIGN_CALM);
    assert.deepEqual(await check(sim), [], `seed ${seed}`);
    const f = sim.foreign[0];
    assert.equal(f.links.size >= 4, true, "linked to every node");
    assert.ok(sim.users.slice(0, 2).every((u) => u.node === f && u.online), "its users are online there");
  }
});

Deno.test(`simulation with a foreign server: ${SEEDS} seeds of broken links, duplicates, reordering and crashes`, async () => {
  const failed: string[] = [];
  for (let seed = 500; seed < 500 + SEEDS; seed++) {
    const problems = await check(await runScenario(seed, FOREIGN_STORM));
    if (problems.length) failed.push(`seed ${seed}: ${problems.slice(0, 3).join(" | ")}`);
  }
  assert.deepEqual(failed, []);
});

Deno.test("simulation: an idle network with a foreign server carries a flat count of heartbeats per minute", async () => {
  const sim = await runScenario(7, FOREIGN_CALM);
  assert.deepEqual(await check(sim), []);
  const minute = async () => {
    sim.serverFrames.clear();
    await sim.run(60_000);
    return new Map(sim.serverFrames);
  };
  const first = await minute();
  const second = await minute();
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  console.log(
    `[sim] idle, 4 nodes + 1 foreign server (heartbeat 1 s, simulated): ${total(first)} then ${
      total(second)
    } server-to-server frames per simulated minute, by type ${JSON.stringify([...second])}`,
  );
  assert.deepEqual([...first.keys()], ["HEARTBEAT"]);
  assert.deepEqual([...second.keys()], ["HEARTBEAT"]);
  assert.ok(Math.abs(total(second) - total(first)) <= total(first) / 20, "flat, not growing");
});
