/**
 * Property (issue 7 §3): random and mutated frames of every type, on connections of every role, through
 * parse -> canonical digest -> signature outcome -> reduce: no exception escapes, every refusal is one of the six
 * error codes, and the state's invariants hold after every step. Seeded, by run count (fewer on CI), shrunk on
 * failure, each failure pinned as a named test (`PINNED`); and the other side: well-formed signed frames are
 * accepted. The long run (10^6 frames) is tests/bench/fuzz_long.ts.
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { fixtureKey } from "../helpers/keys.ts";
import { check, type FuzzKeys, run, stepArb, world } from "../helpers/fuzz.ts";
import { ALICE, BOB } from "../helpers/reducer.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";

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

/** The seed of the fuzz run: fixed, so a run is the same on every machine; `FUZZ_SEED` explores others. */
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x50c9);

/**
 * Failures found by the fuzzer, each pinned as a named test: fast-check prints the seed and the path of the
 * shrunk counterexample when a run fails ("seed: N, path: "...""); add them here with what was wrong, fix the
 * bug, and the counterexample runs on every test run from then on. Empty: no failure found so far.
 */
const PINNED: { name: string; seed: number; path: string }[] = [];

/** Hostile steps through the pipeline: no exception, the six codes, the invariants. */
const property = (onFrames: (n: number) => void = () => {}) =>
  fc.asyncProperty(fc.array(stepArb(keys), { minLength: 1, maxLength: 80, size: "max" }), async (steps) => {
    const r = await run(keys, steps);
    onFrames(r.frames);
    assert.deepEqual(r.problems, []);
  });

Deno.test("fuzz: hostile frames on every connection role never throw, refuse with the six codes, keep invariants", async () => {
  // By run count, not by time: the same runs on every machine, however slow. On failure fast-check shrinks the
  // counterexample and reports its seed and path (see PINNED).
  const runs = Deno.env.get("CI") ? 1000 : 2000;
  let frames = 0;
  const t0 = performance.now();
  await fc.assert(
    property((n) => frames += n),
    { seed: SEED, numRuns: runs },
  );
  const secs = (performance.now() - t0) / 1000;
  console.log(
    `  fuzz: ${runs} runs, ${frames} frames in ${secs.toFixed(1)} s (${
      (frames / secs).toFixed(0)
    } frames/s), ` +
      `seed ${SEED}, 0 problems`,
  );
});

Deno.test("fuzz: the same seed draws the same runs (a failure replays)", async () => {
  const draw = () =>
    fc.sample(fc.array(stepArb(keys), { minLength: 1, maxLength: 20 }), { seed: SEED, numRuns: 20 });
  const a = draw();
  assert.deepEqual(draw(), a);
  const runAll = () => Promise.all(a.map((steps) => run(keys, steps)));
  assert.deepEqual(await runAll(), await runAll());
});

for (const pin of PINNED) {
  Deno.test(`fuzz pinned: ${pin.name}`, async () => {
    await fc.assert(property(), { seed: pin.seed, path: pin.path, endOnFailure: true });
  });
}

Deno.test("property: a well-formed signed DM between two local users is accepted and delivered", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 2048 }),
      fc.uint8Array({ minLength: 1, maxLength: 512 }),
      fc.integer({ min: -5 * 60_000, max: 5 * 60_000 }),
      (ct, cs, skew) => {
        const h = world(keys);
        const payload = {
          ciphertext: encodeBase64Url(ct),
          sender_pub: keys.user,
          content_sig: encodeBase64Url(cs),
        };
        const effects = h.signed(1, { type: "MSG_DIRECT", from: ALICE, to: BOB, ts: h.now + skew, payload });
        const refused = effects.filter((e) => e.kind === "send" && e.frame.type === "ERROR");
        assert.deepEqual(refused, [], "a well-formed signed DM is not refused");
        const out = effects.find((e) => e.kind === "send" && e.conn === 2 && e.frame.type === "USER_DELIVER");
        assert.ok(out?.kind === "send", "it is delivered to Bob's connection");
        const p = out.frame.payload as Record<string, unknown>;
        assert.equal(p.ciphertext, payload.ciphertext);
        assert.equal(p.content_sig, payload.content_sig);
        assert.ok(!effects.some((e) => e.kind === "close"), "and nobody is cut");
      },
    ),
    { seed: SEED, numRuns: 200 },
  );
});
