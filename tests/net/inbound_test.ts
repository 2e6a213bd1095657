/**
 * The inbound pipeline of one connection, alone (lib/net/inbound.ts): frames in flight (received, not yet
 * reduced) are bounded by bytes as well as by count, so one connection cannot make the node hold 400 frames of
 * 256 KiB; what is past the bound is refused unread, in arrival order, and a lone frame is always taken.
 */
import assert from "node:assert/strict";
import { initState } from "../../lib/core/reduce.ts";
import type { Event } from "../../lib/core/types.ts";
import { Counters } from "../../lib/net/counters.ts";
import { type InboundContext, INFLIGHT_BYTES, onFrame } from "../../lib/net/inbound.ts";
import { Connection } from "../../lib/net/connection.ts";
import { Logger } from "../../lib/net/log.ts";
import type { Socket } from "../../lib/net/transport.ts";
import { ALICE, BOB, config } from "../helpers/reducer.ts";

/** A socket that sends nowhere (the pipeline only reads). */
const quiet = (): Socket => ({
  send: () => {},
  close: () => {},
  bufferedAmount: 0,
  open: true,
  onMessage: () => {},
  onClose: () => {},
});

/** The real connection whose frames in flight the pipeline counts, over a quiet socket. */
function connection(ctx: InboundContext): Connection {
  return new Connection({
    conn: 7,
    addr: "127.0.0.1",
    sock: quiet(),
    limits: ctx.limits,
    timers: { set: () => 0, clear: () => {} },
    now: () => 1,
    counters: ctx.counters,
    log: ctx.log,
    lingering: { add: () => {}, release: () => {} },
    stamp: (t) => t,
    onGone: () => {},
  });
}

/** A pipeline whose digests resolve only when the test says so (frames stay in flight until then). */
function pipeline() {
  const state = initState(config());
  state.config.limits.maxFrameBytes = 2 * 1024 * 1024;
  const events: Event[] = [];
  const pending: (() => void)[] = [];
  const counters = new Counters();
  const ctx: InboundContext = {
    limits: state.config.limits,
    counters,
    state: () => state,
    dispatch: (ev) => events.push(ev),
    log: new Logger("error", () => {}),
    now: () => 1,
    fresh: () => "f",
    digest: () => new Promise<string>((r) => pending.push(() => r("d"))),
    verify: () => Promise.resolve(false),
  };
  const conn = connection(ctx);
  const release = async () => {
    while (pending.length > 0 || conn.inflight > 0) {
      pending.splice(0).forEach((r) => r());
      await conn.settled();
    }
  };
  return { ctx, conn, events, counters, release };
}

/** An unsigned DM frame of about `bytes` bytes. */
function bigFrame(i: number, bytes: number): string {
  return JSON.stringify({
    type: "MSG_DIRECT",
    from: ALICE,
    to: BOB,
    ts: i,
    payload: { ciphertext: "A".repeat(bytes), sender_pub: "K", content_sig: "S" },
    sig: "",
  });
}

Deno.test("frames in flight on one connection stay under INFLIGHT_BYTES: the next one is refused unread", async () => {
  const { ctx, conn, events, counters, release } = pipeline();
  const size = 1_000_000;
  let i = 0;
  // Four frames of ~1 MB fit in 4 MiB; each stays in flight (its digest is not done).
  for (; i < 4; i++) {
    onFrame(ctx, 7, conn, bigFrame(i, size));
    assert.ok(conn.inflightBytes <= INFLIGHT_BYTES, `${conn.inflightBytes} bytes in flight`);
  }
  assert.equal(conn.inflight, 4);
  assert.equal(counters.shed, 0);
  // The fifth would pass 4 MiB: shed, and it takes no room.
  onFrame(ctx, 7, conn, bigFrame(i++, size));
  assert.equal(counters.shed, 1);
  assert.equal(conn.inflight, 4);
  assert.ok(conn.inflightBytes <= INFLIGHT_BYTES, `${conn.inflightBytes} bytes in flight`);

  // Once the pipeline has caught up, a frame is taken again.
  await release();
  assert.equal(conn.inflightBytes, 0);
  onFrame(ctx, 7, conn, bigFrame(i++, size));
  assert.equal(counters.shed, 1);
  await release();

  // The reducer heard every frame in arrival order: four DMs, the refusal, then the sixth DM.
  const seen = events.map((e) =>
    e.kind !== "frame"
      ? e.kind
      : e.parsed.ok
      ? `dm ${e.parsed.envelope.ts}`
      : /too many bytes in flight/.test(e.parsed.error.detail)
      ? "shed"
      : e.parsed.error.detail
  );
  assert.deepEqual(seen, ["dm 0", "dm 1", "dm 2", "dm 3", "shed", "dm 5"]);
});

Deno.test("a lone frame is taken whatever its size, and the count bound still holds for small frames", async () => {
  const { ctx, conn, counters, release } = pipeline();
  // One frame larger than the in-flight bound (allowed by a larger frame limit) is never refused by it.
  ctx.limits.maxFrameBytes = 2 * INFLIGHT_BYTES;
  onFrame(ctx, 7, conn, bigFrame(0, INFLIGHT_BYTES + 10));
  assert.equal(counters.shed, 0);
  await release();
  // Small frames: the burst (count) bound.
  ctx.limits.rateBurst = 3;
  for (let i = 1; i <= 4; i++) onFrame(ctx, 7, conn, bigFrame(i, 10));
  assert.equal(counters.shed, 1);
  assert.equal(conn.inflight, 3);
  await release();
});

/**
 * A pipeline on connection 7 of Alice (a user) whose key is `key`; `verify` accepts only `good`'s signatures and
 * records the keys it is asked about; digests wait for the test, so frames stay in flight.
 */
function userPipeline(key: string, good: string) {
  const p = pipeline();
  const state = p.ctx.state();
  state.users.set(ALICE, { userId: ALICE, pubkey: key, encPubkey: key, meta: null, version: 1 } as never);
  state.conns.set(7, { role: "user", userId: ALICE } as never);
  const asked: string[] = [];
  p.ctx.verify = (k) => (asked.push(k), Promise.resolve(k === good));
  return { ...p, state, asked };
}

const signedDm = JSON.stringify({
  type: "MSG_DIRECT",
  from: ALICE,
  to: BOB,
  ts: 1,
  payload: { ciphertext: "C", sender_pub: "K", content_sig: "S" },
  sig: "c2ln",
});

Deno.test("late re-verification: a frame whose key changed before its turn is verified again with the new key", async () => {
  const { ctx, conn, events, release, state, asked } = userPipeline("OLD", "NEW");
  onFrame(ctx, 7, conn, signedDm);
  assert.deepEqual(asked, ["OLD"], "verification starts at once with the key in force");
  // An earlier frame (a hello with a new key, a pin) changes Alice's key before this frame's turn.
  state.users.set(ALICE, { ...state.users.get(ALICE)!, pubkey: "NEW" });
  await release();
  assert.deepEqual(asked, ["OLD", "NEW"], "verified again in its turn");
  const ev = events[0];
  assert.ok(ev.kind === "frame" && ev.parsed.ok);
  assert.equal(ev.sig, "valid");
  assert.equal(ev.sigKey, "NEW", "the key that verified is the one the reducer hears");
});

Deno.test("late re-verification: an unchanged key is verified once; a change to a key that did not sign refuses", async () => {
  const same = userPipeline("K", "K");
  onFrame(same.ctx, 7, same.conn, signedDm);
  await same.release();
  assert.deepEqual(same.asked, ["K"]);
  assert.ok(same.events[0].kind === "frame" && same.events[0].sig === "valid");

  // Signed by the key in force on arrival, but the key changed before its turn: the frame is judged on the new key.
  const changed = userPipeline("K", "K");
  onFrame(changed.ctx, 7, changed.conn, signedDm);
  changed.state.users.set(ALICE, { ...changed.state.users.get(ALICE)!, pubkey: "OTHER" });
  await changed.release();
  assert.deepEqual(changed.asked, ["K", "OTHER"]);
  const ev = changed.events[0];
  assert.ok(ev.kind === "frame");
  assert.equal(ev.sig, "invalid");
  assert.equal(ev.sigKey, undefined);
});
