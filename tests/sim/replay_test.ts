/**
 * Determinism: the reducer is a function of its inputs. A simulation run (federation, users, DMs, broken links,
 * duplicated and reordered frames, crashes and restarts) records every node start (the `initState` inputs) and
 * every event it feeds `reduce`; replaying the record twice into fresh states gives, event for event, the same
 * effects as the run, and the same final states.
 */
import assert from "node:assert/strict";
import { initState, reduce } from "../../lib/core/reduce.ts";
import type { State } from "../../lib/core/types.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { type Recorded, Sim } from "./sim.ts";

const KEYS = await Promise.all(
  ["user1", "user2", "user3", "user4"].map(async (k) => (await fixtureKey(k)).publicKey),
);

async function record(seed: number): Promise<{ sim: Sim; rec: Recorded[] }> {
  const sim = new Sim(seed, KEYS);
  const rec: Recorded[] = [];
  sim.recording = rec;
  const { rng } = sim;
  sim.addNode(0, []);
  for (let i = 1; i < 3; i++) sim.addNode(i, [0]);
  sim.start(sim.nodes[0]);
  for (const n of sim.nodes.slice(1)) sim.at(sim.now + 10 + rng.int(2000), () => sim.start(n));
  await sim.run(5000);
  for (let i = 0; i < 5; i++) sim.addUser(i % KEYS.length);
  for (const u of sim.users) sim.connect(u, rng.pick(sim.nodes.filter((n) => n.state)));
  await sim.run(1000);
  sim.faults = { breakLink: 0.002, duplicate: 0.02, reorder: 0.02 };
  sim.at(sim.now + 2000, () => sim.crash(sim.nodes[2]));
  sim.at(sim.now + 3500, () => sim.nodes[2].state ?? sim.start(sim.nodes[2]));
  const end = sim.now + 6000;
  while (sim.now < end) {
    await sim.run(100);
    const u = rng.pick(sim.users);
    if (rng.chance(0.03)) sim.disconnect(u);
    else if (rng.chance(0.05) && !u.pipe) {
      const up = sim.nodes.filter((n) => n.state);
      if (up.length) sim.connect(u, rng.pick(up));
    }
    if (rng.chance(0.5)) {
      const to = rng.pick(sim.users);
      if (to !== u) sim.dm(u, to);
    }
    if (rng.chance(0.05)) sim.all(u);
    if (rng.chance(0.01)) sim.crash(rng.pick(sim.nodes.slice(1)));
    if (rng.chance(0.03)) {
      const down = sim.nodes.filter((n) => !n.state);
      if (down.length) sim.start(rng.pick(down));
    }
  }
  sim.faults = { breakLink: 0, duplicate: 0, reorder: 0 };
  await sim.run(5000);
  return { sim, rec };
}

/** Replay a record into fresh states; the effects of each event, and each node's final state. */
function replay(rec: Recorded[]): { effects: unknown[]; states: Map<number, State> } {
  const states = new Map<number, State>();
  const effects: unknown[] = [];
  for (const r of structuredClone(rec)) {
    if ("start" in r) {
      states.set(r.node, initState(r.start.config, r.start.loaded));
      continue;
    }
    const step = reduce(states.get(r.node)!, r.event);
    states.set(r.node, step.state);
    effects.push(step.effects);
  }
  return { effects, states };
}

for (const seed of [1, 2, 3]) {
  Deno.test(`replay: seed ${seed} replays to the same effects and states, twice`, async (t) => {
    const { sim, rec } = await record(seed);
    const events = rec.filter((r) => "event" in r);
    const kinds = new Set<string>(events.map((r) => "event" in r ? r.event.kind : ""));
    // The run exercised the reducer: frames, connections coming and going, ticks, and restarts.
    assert.ok(events.length > 250, `only ${events.length} events recorded`);
    for (const k of ["started", "connected", "frame", "closed", "tick"]) {
      assert.ok(kinds.has(k), `no ${k} event`);
    }
    assert.ok(rec.filter((r) => "start" in r).length > sim.nodes.length, "no node was restarted");

    const a = replay(rec);
    const b = replay(rec);
    await t.step("the replay gives the run's effects, event for event", () => {
      assert.deepEqual(a.effects, events.map((r) => "event" in r ? r.effects : []));
    });
    await t.step("two replays agree on effects and final states", () => {
      assert.deepEqual(b.effects, a.effects);
      assert.deepEqual(b.states, a.states);
    });
    await t.step("the replayed final states are the run's (for the nodes that are up)", () => {
      for (const n of sim.nodes) {
        if (n.state) assert.deepEqual(a.states.get(n.index), n.state);
      }
    });
  });
}
