/**
 * Benchmark (not a test): the long fuzz run of issue 7 §3.
 *
 *   deno run -A --v8-flags=--expose-gc tests/bench/fuzz_long.ts [frames=1000000] [seed=1]
 *   (also run by `deno task bench`)
 *
 * Part 1 feeds `frames` fuzzed frames (tests/helpers/fuzz.ts: random and mutated frames of every type, every
 * connection role) through the shell's inbound pipeline (parse, digest, signature check) to the reducer, in fresh worlds of up to 80 steps, and prints frames/s and
 * the exceptions and invariant violations found (must be 0).
 * Part 2 is the leak check: 200,000 fuzzed frames into ONE long-lived world (connections that close are opened
 * again), then the size of every map and set in the reducer state, and the heap after a full GC (with
 * --expose-gc): state that grows with the number of frames is a leak; heap that GC returns is garbage.
 */
import fc from "npm:fast-check@4.10.2";
import { fixtureKey } from "../helpers/keys.ts";
import { type FuzzKeys, type FuzzStep, revive, run, stepArb, world } from "../helpers/fuzz.ts";

const total = Number(Deno.args[0] ?? 1_000_000);
const seed = Number(Deno.args[1] ?? 1);
const keys: FuzzKeys = {
  user: (await fixtureKey("user1")).publicKey,
  server: (await fixtureKey("user4")).publicKey,
};
const gc = (globalThis as { gc?: () => void }).gc;

// Part 1.
const arb = fc.array(stepArb(keys), { minLength: 1, maxLength: 80, size: "max" });
let frames = 0;
let problems = 0;
const examples: string[] = [];
const t0 = performance.now();
for (let batch = 0; frames < total; batch++) {
  for (const steps of fc.sample(arb, { seed: seed * 1_000_003 + batch, numRuns: 200 })) {
    const r = await run(keys, steps);
    frames += r.frames;
    problems += r.problems.length;
    if (r.problems.length && examples.length < 3) examples.push(r.problems[0].slice(0, 300));
  }
}
const secs = (performance.now() - t0) / 1000;
console.log(
  `fuzz: ${frames} frames in ${secs.toFixed(1)} s = ${(frames / secs).toFixed(0)} frames/s (seed ${seed})`,
);
console.log(`  exceptions and invariant violations found: ${problems}`);
for (const e of examples) console.log(`  e.g. ${e}`);

// Part 2.
const h = world(keys);
const long: FuzzStep[] = [];
for (let batch = 0; long.length < 200_000; batch++) {
  for (const steps of fc.sample(arb, { seed: seed * 7_000_001 + batch, numRuns: 200 })) long.push(...steps);
}
gc?.();
const heap0 = Deno.memoryUsage().heapUsed;
const r = await runLong(long);
gc?.();
const heap1 = Deno.memoryUsage().heapUsed;
const sizes = Object.entries(h.state).flatMap(([k, v]) =>
  v instanceof Map || v instanceof Set
    ? [`${k}=${v.size}`]
    : k === "seen"
    ? [`seen=${h.state.seen.size}`]
    : []
);
console.log(`leak check: ${r.frames} frames into one world (${r.problems} problems)`);
console.log(`  state after: ${sizes.join(" ")}`);
console.log(
  gc
    ? `  heap after a full GC: ${((heap1 - heap0) / 1048576).toFixed(1)} MiB more than before the run`
    : "  (run with --v8-flags=--expose-gc to measure the heap after a full GC)",
);

/** Feed steps into `h`, reopening inbound connections the fuzz closed (see world()). */
async function runLong(steps: FuzzStep[]): Promise<{ frames: number; problems: number }> {
  // run() builds a fresh world per call; here the same world lives on, chunk after chunk.
  let framesIn = 0;
  let bad = 0;
  const chunk = 80;
  for (let i = 0; i < steps.length; i += chunk) {
    const res = await run(keys, steps.slice(i, i + chunk), h);
    framesIn += res.frames;
    bad += res.problems.length;
    revive(h, keys);
  }
  return { frames: framesIn, problems: bad };
}
