/**
 * lib/core/timers.ts: the reducer says when it next needs the clock. With fake time, each time-driven rule is
 * due at `nextDeadline(state)`: a tick one millisecond before changes nothing, a tick at it fires the rule.
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { nextDeadline } from "../../lib/core/reduce.ts";
import { SWEEP_SLACK_MS } from "../../lib/core/timers.ts";
import { DEFAULT_FEDERATION, DEFAULT_LIMITS, type Effect } from "../../lib/core/types.ts";
import { type FuzzKeys, run, stepArb, world } from "../helpers/fuzz.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { ALICE, BOB, closes, dials, errors, Harness, joining, sent, SERVER, T0 } from "../helpers/reducer.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const S2K = (await fixtureKey("user4")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const { heartbeatMs, linkTimeoutMs } = DEFAULT_FEDERATION;

/** The deadline, checked: a tick 1 ms before it emits nothing; returns the effects of a tick at it. */
function tickAtDeadline(h: Harness): { at: number; fx: Effect[] } {
  const at = nextDeadline(h.state);
  assert.ok(at !== null, "a deadline is pending");
  assert.ok(at > h.now, "in the future");
  assert.deepEqual(h.step({ kind: "tick", now: at - 1 }), [], "a tick before the deadline does nothing");
  h.now = at;
  return { at, fx: h.step({ kind: "tick", now: at }) };
}

/** Tick at each deadline (checking each) until a tick does something anyone sees (sweeps are only memory). */
function nextFiring(h: Harness): { at: number; fx: Effect[] } {
  for (let i = 0; i < 100; i++) {
    const step = tickAtDeadline(h);
    if (step.fx.length > 0) return step;
  }
  throw new Error("no rule fired");
}

/** A node S2 joined (conn 10), nobody else. */
function linked(): Harness {
  const h = new Harness().linkedTo(S2, S2K);
  assert.equal(h.state.links.get(S2), 10);
  return h;
}

Deno.test("nothing pending, no deadline: a node alone with nobody connected needs no clock", () => {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  assert.equal(nextDeadline(h.state), null);
  assert.deepEqual(h.step({ kind: "tick", now: h.now + 3_600_000 }), [], "a tick is harmless");
});

Deno.test("first-frame timeout: due firstFrameMs after the connection opened, fired once", () => {
  const h = new Harness();
  h.connect(1);
  const { at, fx } = tickAtDeadline(h);
  assert.equal(at, T0 + DEFAULT_LIMITS.firstFrameMs + 1);
  assert.deepEqual(errors(fx), ["TIMEOUT"]);
  assert.deepEqual(closes(fx), [{ conn: 1, code: 1008 }]);
  assert.equal(nextDeadline(h.state), null, "reported once: nothing else is due");
});

Deno.test("a later connection's deadline waits behind an earlier one's", () => {
  const h = new Harness();
  h.connect(1);
  h.now += 3000;
  h.connect(2);
  assert.equal(nextDeadline(h.state), T0 + DEFAULT_LIMITS.firstFrameMs + 1);
  const first = tickAtDeadline(h);
  assert.deepEqual(closes(first.fx), [{ conn: 1, code: 1008 }]);
  const second = tickAtDeadline(h);
  assert.equal(second.at, T0 + 3000 + DEFAULT_LIMITS.firstFrameMs + 1);
  assert.deepEqual(closes(second.fx), [{ conn: 2, code: 1008 }]);
});

Deno.test("link heartbeat: due heartbeatMs after we last sent on the link", () => {
  const h = linked(); // our answer to the JOIN went out at T0
  const { at, fx } = nextFiring(h);
  assert.equal(at, T0 + heartbeatMs);
  assert.deepEqual(sent(fx, 10).map((f) => f.type), ["HEARTBEAT"]);
  assert.equal(nextDeadline(h.state), at + heartbeatMs, "the next one a period later");
});

Deno.test("link silence: driven only by its deadlines, a heartbeating server's link closes linkTimeoutMs after its last frame", () => {
  const h = linked();
  h.now += 5000;
  h.signed(10, { type: "HEARTBEAT", from: S2, to: SERVER, ts: h.now, payload: {} });
  const lastSeen = h.now;
  for (let i = 0; i < 10; i++) {
    const { at, fx } = nextFiring(h);
    if (closes(fx).length === 0) {
      assert.deepEqual(sent(fx, 10).map((f) => f.type), ["HEARTBEAT"], "only our heartbeats until then");
      continue;
    }
    assert.equal(at, lastSeen + linkTimeoutMs + 1);
    assert.deepEqual(closes(fx), [{ conn: 10, code: 1001 }]);
    assert.equal(h.state.links.has(S2), false);
    return;
  }
  assert.fail("the silent link was never closed");
});

Deno.test("a link we dialed, waiting for the peer's first frame, heartbeats on its deadline", () => {
  const h = new Harness();
  h.state.servers.set(S2, { serverId: S2, host: "s2", port: 9000, pubkey: S2K });
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  const hello = h.step({ kind: "connected", conn: 20, addr: "s2", now: h.now, dial: d.token });
  assert.deepEqual(sent(hello, 20).map((f) => f.type), ["SERVER_HELLO_LINK"]);
  const { at, fx } = tickAtDeadline(h);
  assert.equal(at, T0 + heartbeatMs);
  assert.deepEqual(sent(fx, 20).map((f) => f.type), ["HEARTBEAT"]);
});

Deno.test("join: a bootstrap connection without SERVER_WELCOME is given up at its deadline", () => {
  const h = new Harness(joining([{ host: "intro", port: 1, pubkey: S2K }]));
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  h.step({ kind: "connected", conn: 20, addr: "intro", now: h.now, dial: d.token });
  const { at, fx } = tickAtDeadline(h);
  assert.equal(at, T0 + Math.max(linkTimeoutMs, 5000) + 1);
  assert.deepEqual(closes(fx), [{ conn: 20, code: 1001 }]);
});

Deno.test("file stall: a transfer without a frame for fileStallMs is dropped at its deadline", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.connect(2);
  h.hello(2, BOB, K2);
  h.now += 1000;
  h.frame(1, {
    type: "FILE_START",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { file_id: "f1", name: "a.txt", size: 10, sha256: "0".repeat(64), mode: "dm" },
  });
  assert.equal(h.state.transfers.size, 1);
  // The hello buckets are swept first (only memory, nothing sent): skip to the stall.
  while (nextDeadline(h.state)! < T0 + 1000 + DEFAULT_LIMITS.fileStallMs) tickAtDeadline(h);
  const { at, fx } = tickAtDeadline(h);
  assert.equal(at, T0 + 1000 + DEFAULT_LIMITS.fileStallMs + 1);
  assert.deepEqual(sent(fx, 1).map((f) => f.type), ["ERROR"]);
  assert.deepEqual(sent(fx, 2).map((f) => f.type), ["ERROR"]);
  assert.deepEqual(errors(fx), ["TIMEOUT", "TIMEOUT"]);
  assert.equal(h.state.transfers.size, 0);
});

Deno.test("sweeps (memory only) are due at their expiry plus the slack: hello buckets, seen keys, presence times", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.step({ kind: "closed", conn: 1, now: h.now });
  assert.equal(h.state.helloBuckets.size, 1);
  assert.ok(h.state.seen.size > 0);
  assert.ok(h.state.presenceTs.has(ALICE));
  // The address's hello bucket is full again one token later (helloPerSec a second).
  const full = T0 + Math.ceil(1000 / DEFAULT_LIMITS.helloPerSec);
  assert.equal(nextDeadline(h.state), full + SWEEP_SLACK_MS);
  h.step({ kind: "tick", now: full - 1 });
  assert.equal(h.state.helloBuckets.size, 1, "not full yet: kept");
  assert.deepEqual(tickAtDeadline(h).fx, [], "nothing anyone sees");
  assert.equal(h.state.helloBuckets.size, 0, "swept");
  // Alice's last presence time goes a seen TTL after she left; the hello's seen keys about then too.
  const presenceAt = T0 + DEFAULT_LIMITS.seenTtlMs + 1 + SWEEP_SLACK_MS;
  const next = nextDeadline(h.state)!;
  assert.ok(next <= presenceAt && next >= T0 + DEFAULT_LIMITS.seenTtlMs, `${next - T0}`);
  h.step({ kind: "tick", now: T0 + DEFAULT_LIMITS.seenTtlMs });
  assert.ok(h.state.presenceTs.has(ALICE), "kept for the whole TTL");
  while (h.state.seen.size > 0 || h.state.presenceTs.size > 0) {
    const at = nextDeadline(h.state)!;
    assert.ok(at <= presenceAt || h.state.presenceTs.size === 0, "presence times swept by their deadline");
    tickAtDeadline(h);
  }
  assert.equal(nextDeadline(h.state), null, "nothing left to do");
});

Deno.test("a user withdrawn with a lost link: their presence time is swept a seen TTL after their last advert", () => {
  const h = linked();
  const advert = {
    type: "USER_ADVERTISE",
    from: S2,
    to: "*",
    ts: h.now,
    payload: { user_id: BOB, server_id: S2, meta: {}, pubkey: K2 },
  };
  h.signed(10, advert);
  assert.equal(h.state.presence.get(BOB)?.serverId, S2);
  h.now += 60_000;
  h.step({ kind: "tick", now: h.now }); // the sweeps due since: Bob is online, his time is kept
  h.step({ kind: "closed", conn: 10, now: h.now });
  assert.equal(h.state.presence.has(BOB), false, "withdrawn");
  const at = T0 + DEFAULT_LIMITS.seenTtlMs + 1;
  assert.equal(h.state.sweepAt, at, "the lost link scheduled the sweep of his time");
  assert.ok(nextDeadline(h.state)! <= at + SWEEP_SLACK_MS, "a sweep is due by then");
  while (h.state.presenceTs.has(BOB)) {
    const { at: t } = tickAtDeadline(h);
    assert.ok(t <= at + SWEEP_SLACK_MS, `swept by its deadline (${t - T0})`);
  }
});

Deno.test("a tick at any time is harmless: random ticks between deadlines emit nothing", () => {
  const h = linked();
  h.connect(1);
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 20; i++) {
    const at = nextDeadline(h.state)!;
    for (let j = 0; j < 5; j++) {
      const t = h.now + Math.floor(rand() * (at - h.now));
      assert.deepEqual(h.step({ kind: "tick", now: t }), [], `tick at ${t - T0} before ${at - T0}`);
    }
    h.now = at;
    h.step({ kind: "tick", now: at });
  }
});

// --- property: over hostile event sequences (the fuzzer's steps), the deadline is honest -------------------------

const fuzzKeys: FuzzKeys = { user: K1, server: S2K };

Deno.test("property: after any hostile sequence, ticks before the deadline emit nothing, and a tick leaves nothing due", () => {
  fc.assert(
    fc.property(
      fc.array(stepArb(fuzzKeys), { minLength: 1, maxLength: 40 }),
      fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 4, maxLength: 4 }),
      (steps, fractions) => {
        const h = world(fuzzKeys);
        run(fuzzKeys, steps, h);
        for (const f of fractions) {
          const at = nextDeadline(h.state);
          if (at === null) return;
          if (at > h.now) {
            const t = h.now + Math.floor(f * (at - h.now));
            if (t < at) assert.deepEqual(h.step({ kind: "tick", now: t }), [], `a tick ${at - t} ms early`);
            h.now = at;
          }
          h.step({ kind: "tick", now: h.now });
          const next = nextDeadline(h.state);
          assert.ok(next === null || next > h.now, `still due after the tick: ${next! - h.now} ms`);
        }
      },
    ),
    { seed: 0x7133, numRuns: 300 },
  );
});
