/**
 * Property (issue 7 §3): random and mutated frames of every type, on connections of every role, through
 * parse -> canonical digest -> signature outcome -> reduce: no exception escapes, every refusal is one of the six
 * error codes, and the state's invariants hold after every step. Seeded, and bounded in time (fewer runs on CI).
 * The long run (10^6 frames) is tests/bench/fuzz_long.ts.
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { fixtureKey } from "../helpers/keys.ts";
import { check, type FuzzKeys, run, stepArb, world } from "../helpers/fuzz.ts";

const keys: FuzzKeys = {
  user: (await fixtureKey("user1")).publicKey,
  server: (await fixtureKey("user4")).publicKey,
};

Deno.test("fuzz world: every role is present before the fuzzing starts", () => {
  const h = world(keys);
  const roles = [1, 2, 10, 20, 30, 35].map((c) => {
    const conn = h.state.conns.get(c);
    return conn ? `${conn.role}${conn.dial ? "(dialed)" : ""}` : "none";
  });
  assert.deepEqual(roles, ["user", "user", "server", "pending(dialed)", "pending", "pending"]);
  assert.deepEqual(check(h.state, []), []);
});

Deno.test("fuzz: hostile frames on every connection role never throw, refuse with the six codes, keep invariants", () => {
  const runs = Deno.env.get("CI") ? 2000 : 10_000;
  const deadline = Date.now() + 25_000;
  let frames = 0;
  const t0 = performance.now();
  fc.assert(
    fc.property(fc.array(stepArb(keys), { minLength: 1, maxLength: 80, size: "max" }), (steps) => {
      if (Date.now() > deadline) return; // bounded in time: later runs are skipped, not failed
      const r = run(keys, steps);
      frames += r.frames;
      assert.deepEqual(r.problems, []);
    }),
    { seed: 0x50c9, numRuns: runs, endOnFailure: true },
  );
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `  fuzz: ${frames} frames in ${secs.toFixed(1)} s (${(frames / secs).toFixed(0)} frames/s), 0 problems`,
  );
  assert.ok(frames > 1000, `only ${frames} frames were fuzzed`);
});
