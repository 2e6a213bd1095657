/**
 * The whole simulation is a function of its seed: one seed run twice (nodes with their executors and real
 * SQLite stores, the network with its buffers and faults, failing store writes, crashes and restarts, scripted
 * users and users driven by the client core)
 * puts the same frames on the wire at the same simulated times, and ends in the same reducer states, the same
 * database contents and the same deliveries. A run that depended on the wall clock, on real timers, on the order
 * in which the runtime settles promises, or on an unseeded random draw would differ.
 */
import assert from "node:assert/strict";
import { sha256, toHex } from "../../lib/protocol/sha256.ts";
import { check, runScenario, STORE_STORM } from "./scenario.ts";
import type { Sim } from "./sim.ts";

/** JSON with Maps and Sets as sorted entry lists (reducer states hold both). */
function stable(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (v instanceof Map) {
      return [
        "Map",
        [...v.entries()].sort((a, b) => String(a[0]) < String(b[0]) ? -1 : 1),
      ];
    }
    if (v instanceof Set) return ["Set", [...v].sort()];
    return v;
  });
}

interface Outcome {
  frames: number;
  traceDigest: string;
  statesDigest: string;
  storesDigest: string;
  deliveries: string;
  storeFailures: number;
  cuts: number;
  clientDms: number;
}

async function outcome(seed: number): Promise<Outcome> {
  const trace: string[] = [];
  const sim: Sim = await runScenario(seed, STORE_STORM, (s) => s.trace = trace);
  const problems = await check(sim);
  assert.deepEqual(problems, [], `seed ${seed}`);
  return {
    frames: trace.length,
    traceDigest: toHex(sha256(trace.join("\n"))),
    statesDigest: toHex(sha256(stable(sim.nodes.map((n) => n.state)))),
    storesDigest: toHex(sha256(stable(sim.nodes.map((n) => n.db.load(sim.now))))),
    deliveries: stable([
      ...sim.users.map((u) => [u.userId, u.received, u.online]),
      ...sim.clients.map((c) => [c.userId, c.shown, c.online, c.core.messages()]),
    ]),
    storeFailures: sim.storeFailures,
    cuts: sim.nodes.reduce((n, x) => n + x.counters.tooSlow, 0),
    clientDms: sim.clientDms.size,
  };
}

Deno.test("simulation: one seed run twice gives the same frames, states, stores and deliveries", async () => {
  const seed = 311;
  const a = await outcome(seed);
  const b = await outcome(seed);
  // The run did what is compared: many frames, failing writes (restarts from the store), too-slow cuts.
  assert.ok(a.frames > 1000, `only ${a.frames} frames`);
  assert.ok(a.storeFailures > 0, "no store write failed");
  assert.ok(a.cuts > 0, "no too-slow cut");
  assert.ok(a.clientDms > 50, `only ${a.clientDms} DMs between client cores`);
  assert.deepEqual(b, a);
});
