/**
 * One connection's state machine alone (lib/net/connection.ts), on fake time over a socket whose buffer drains at
 * a rate the test sets: the outbound chain keeps send order, drain waits for room without polling on a fixed
 * period (it looks again when the buffer should have drained at the rate seen), a peer that does not read is cut
 * as too slow once its stall is confirmed, lingers until the runtime closes the socket, and the reducer hears
 * once; the reducer's close goes after the frames before it, or by force past its deadline.
 */
import assert from "node:assert/strict";
import { DEFAULT_LIMITS, type Limits } from "../../lib/core/types.ts";
import { Connection, STALL_MS } from "../../lib/net/connection.ts";
import { highWater } from "../../lib/net/outbound.ts";
import { Counters } from "../../lib/net/counters.ts";
import { Logger } from "../../lib/net/log.ts";
import type { Socket } from "../../lib/net/transport.ts";
import { FakeTime } from "./fake_time.ts";

/** A socket whose buffer empties at `rate` bytes per fake ms (0: the peer does not read). */
class DrainingSocket implements Socket {
  sent: string[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  open = true;
  rate = 0;
  onMessage: (data: unknown) => void = () => {};
  onClose: () => void = () => {};
  #buffered = 0;
  #at: number;
  constructor(private readonly time: FakeTime, buffered = 0) {
    this.#at = time.now;
    this.#buffered = buffered;
  }
  get bufferedAmount(): number {
    const left = Math.max(0, this.#buffered - this.rate * (this.time.now - this.#at));
    this.#buffered = left;
    this.#at = this.time.now;
    return left;
  }
  send(text: string): void {
    if (!this.open) return;
    this.sent.push(text);
    this.#buffered = this.bufferedAmount + text.length;
  }
  close(code?: number, reason?: string): void {
    if (!this.open) return;
    this.open = false;
    this.closedWith = { code, reason };
  }
  /** The runtime reports the close (it may come much later than `close()` for a peer that does not read). */
  closedByRuntime(): void {
    this.open = false;
    this.onClose();
  }
}

function setup(opts: { buffered?: number; limits?: Partial<Limits> } = {}) {
  const time = new FakeTime();
  const sock = new DrainingSocket(time, opts.buffered ?? 0);
  const limits: Limits = { ...DEFAULT_LIMITS, maxUnsentBytes: 1_000_000, ...opts.limits };
  const counters = new Counters();
  const lines: string[] = [];
  const linger: string[] = [];
  let gone = 0;
  const c = new Connection({
    conn: 1,
    addr: "127.0.0.1",
    sock,
    limits,
    timers: time,
    now: time.clock,
    counters,
    log: new Logger("debug", (l) => lines.push(l)),
    lingering: { add: (a) => linger.push(`+${a}`), release: (a) => linger.push(`-${a}`) },
    stamp: (t) => t,
    onGone: () => gone++,
  });
  sock.onClose = () => c.closed();
  return {
    time,
    sock,
    c,
    limits,
    counters,
    lines,
    linger,
    gone: () => gone,
    high: highWater(limits.maxUnsentBytes),
  };
}

/** What should never happen (a frame undelivered, a text failing): checked empty at the end of each test. */
const problems: string[] = [];
const fail = (e: unknown) => void problems.push(String(e));
const none = () => assert.deepEqual(problems.splice(0), []);

const frame = (i: number, bytes = 100) => `${i}`.padEnd(bytes, ".");

Deno.test("the outbound chain keeps send order whatever order the texts are ready in", async () => {
  const { time, sock, c } = setup();
  const resolvers: ((t: string) => void)[] = [];
  for (let i = 0; i < 3; i++) {
    c.queue(100, new Promise<string>((r) => resolvers.push(r)), () => fail("undelivered"), fail);
  }
  resolvers[2](frame(2));
  resolvers[1](frame(1));
  await time.settle();
  assert.deepEqual(sock.sent, [], "nothing before the first is ready");
  resolvers[0](frame(0));
  await time.settle();
  assert.deepEqual(sock.sent.map((t) => t[0]), ["0", "1", "2"]);
  assert.equal(c.pending, 0);
  none();
});

Deno.test("drain: a frame waits for room, and the connection looks again when the buffer should have drained", async () => {
  const { time, sock, c, high } = setup({ limits: { maxUnsentBytes: 8 << 20 } });
  // 1 MB over the high-water mark, read at 1,000 bytes per ms: room in 1,000 ms.
  const over = 1_000_000;
  sock.send("x".repeat(high + over));
  sock.sent.length = 0;
  sock.rate = 1_000;
  const start = time.now;
  const armed: number[] = [];
  const set = time.set.bind(time);
  time.set = (fn, ms) => (armed.push(ms), set(fn, ms));
  c.queue(100, Promise.resolve(frame(1)), () => fail("undelivered"), fail);
  await time.settle();
  assert.deepEqual(sock.sent, [], "the buffer is over the mark: the frame waits");
  assert.equal(c.drain, "waiting");
  await time.until(() => sock.sent.length === 1, "the frame sent once there is room", 5_000);
  const waited = time.now - start;
  assert.ok(waited >= over / 1_000, `sent after ${waited} ms, before the buffer had room`);
  assert.ok(waited <= over / 1_000 + 64, `sent ${waited - over / 1_000} ms after there was room`);
  // A poll every 10 ms would have looked 100 times; the drain armed one timer per look, each for the next thing.
  assert.ok(armed.length <= 30, `${armed.length} looks: ${armed.join(",")}`);
  console.log(
    `  a 1 MB drain over ${waited} ms of fake time: ${armed.length} timers armed (${armed.join(",")} ms)`,
  );
  assert.equal(c.drain, "idle");
  assert.equal(c.phase, "open");
  none();
});

Deno.test("a peer that does not read is cut as too slow once its stall is confirmed, lingers, and is reported once", async () => {
  const { time, sock, c, counters, linger, gone } = setup({ limits: { maxUnsentBytes: 300_000 } });
  const undelivered: number[] = [];
  const start = time.now;
  // The peer never reads: the first frame fills its buffer past the mark, the other four (280 KB) wait signed,
  // 350 KB in all: past maxUnsentBytes once the stall is confirmed, it is cut.
  for (let i = 0; i < 5; i++) {
    assert.ok(c.room(70_000), `frame ${i} has room`);
    c.queue(70_000, Promise.resolve(frame(i, 70_000)), () => undelivered.push(i), fail);
  }
  await time.settle();
  assert.equal(c.drain, "waiting", "not stalled before the buffer has stood still for STALL_MS");
  await time.until(() => c.phase === "lingering", "the cut");
  assert.ok(time.now - start >= STALL_MS, `cut after ${time.now - start} ms`);
  assert.deepEqual(sock.closedWith, { code: 1008, reason: "too slow" });
  assert.equal(counters.tooSlow, 1);
  assert.deepEqual(linger, ["+127.0.0.1"]);
  await time.settle();
  assert.equal(gone(), 1, "the reducer hears at the cut, not when the runtime lets go");
  assert.equal(sock.sent.length, 1);
  assert.deepEqual(undelivered, [1, 2, 3, 4], "what never reached the socket is undelivered");
  assert.equal(c.accepting, false);
  assert.equal(c.skipping, true, "inbound frames still waiting are skipped");
  // The runtime lets go of the socket at last: it stops lingering, and the reducer is not told twice.
  sock.closedByRuntime();
  await time.settle();
  assert.equal(c.phase, "ended");
  assert.deepEqual(linger, ["+127.0.0.1", "-127.0.0.1"]);
  assert.equal(gone(), 1);
  none();
});

Deno.test("a stalled peer is cut at the next frame that passes maxUnsentBytes, and a slow reader is not cut", async () => {
  const { time, sock, c, high } = setup({ limits: { maxUnsentBytes: 300_000 } });
  sock.send("x".repeat(high + 1));
  c.queue(100_000, Promise.resolve(frame(0, 100_000)), () => {}, fail);
  await time.until(() => c.drain === "stalled", "the stall confirmed");
  assert.equal(c.phase, "open", "under the bound: not cut yet");
  assert.ok(c.room(100_000));
  c.queue(100_000, Promise.resolve(frame(1, 100_000)), () => {}, fail);
  await time.settle();
  assert.equal(c.room(150_000), false, "past the bound while stalled: cut");
  assert.equal(c.phase, "lingering");

  // A reader that keeps reading, however slowly, is never stalled.
  const slow = setup({ limits: { maxUnsentBytes: 300_000 } });
  slow.sock.send("x".repeat(slow.high + 50_000));
  slow.sock.rate = 0.2; // 200 bytes per second: 250 s for the 50 KB
  for (let i = 0; i < 3; i++) slow.c.queue(60_000, Promise.resolve(frame(i)), () => {}, fail);
  await slow.time.until(() => slow.sock.sent.length === 1, "the first frame once there is room", 400_000);
  assert.equal(slow.c.phase, "open");
  none();
});

Deno.test("a close wakes a drain waiting on its timer: the frame is undelivered at once", async () => {
  const { time, sock, c, high, gone } = setup();
  sock.send("x".repeat(high + 1));
  let missed = false;
  c.queue(100, Promise.resolve(frame(1)), () => missed = true, fail);
  await time.advance(10); // the drain now waits on a timer
  assert.ok(time.armed.size > 0);
  const at = time.now;
  sock.closedByRuntime();
  await time.settle();
  assert.equal(missed, true);
  assert.equal(time.now, at, "without moving the clock");
  assert.equal(c.phase, "dropped", "the peer closed it first");
  assert.equal(c.skipping, false, "frames it sent before closing are still handled");
  assert.equal(gone(), 1);
  assert.equal(time.armed.size, 0, "no timer left armed");
  none();
});

Deno.test("the reducer's close goes after the frames before it; a peer that does not read is closed by force", async () => {
  const a = setup();
  a.c.queue(100, Promise.resolve(frame(1)), () => fail("undelivered"), fail);
  a.c.close(1000, "bye");
  assert.equal(a.c.phase, "closing");
  assert.equal(a.c.accepting, false);
  await a.time.settle();
  assert.equal(a.sock.sent.length, 1);
  assert.deepEqual(a.sock.closedWith, { code: 1000, reason: "bye" });
  assert.equal(a.time.armed.size, 0, "the forced close was cancelled");

  const b = setup();
  b.sock.send("x".repeat(b.high + 1));
  b.c.queue(100, Promise.resolve(frame(1)), () => {}, fail);
  b.c.close(1008, "bye", 5_000);
  await b.time.advance(4_999);
  assert.equal(b.sock.closedWith, undefined, "the frame before it still waits");
  await b.time.advance(1);
  assert.deepEqual(b.sock.closedWith, { code: 1008, reason: "bye" });
  b.sock.closedByRuntime();
  await b.time.settle();
  assert.equal(b.c.phase, "ended");
  assert.equal(b.gone(), 1);
  none();
});

Deno.test("frames in flight are bounded by count and by bytes; a lone frame is always taken", () => {
  const { c } = setup({ limits: { rateBurst: 3 } });
  assert.equal(c.admit(5 * 1024 * 1024), undefined, "a lone frame over the byte bound");
  assert.equal(c.admit(10), "bytes");
  c.landed(5 * 1024 * 1024);
  assert.equal(c.admit(10), undefined);
  assert.equal(c.admit(10), undefined);
  assert.equal(c.admit(10), undefined);
  assert.equal(c.admit(10), "count");
  assert.equal(c.inflight, 3);
  assert.equal(c.inflightBytes, 30);
  none();
});
