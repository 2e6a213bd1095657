/**
 * The effect executor over a fake transport and a store in memory, on fake time (lib/net/executor.ts): frames the
 * reducer sends reach the right socket signed by the server, persist effects reach the store, queued frames are
 * handed over and then deleted, and a connection the reducer closes is closed with its code after the frames
 * before it. Timers and the clock are a {@linkcode FakeTime} the test moves; signatures, digests and their checks
 * are fakes that resolve at once (`fake:` + a hash of the signer's key and the canonical payload), so nothing
 * waits for real time: every wait is on fake time, with a deadline.
 */
import assert from "node:assert/strict";
import { initState } from "../../lib/core/reduce.ts";
import type { Limits, ServerRecord, UserRecord } from "../../lib/core/types.ts";
import type { SealedKey } from "../../lib/crypto/keyfile.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { parseFrame, serializeEnvelope } from "../../lib/protocol/envelope.ts";
import { sha256HexSync } from "../../lib/net/digest.ts";
import {
  createExecutor,
  type Executor,
  type FrameSigner,
  STORED_PAGE,
  type StoreLike,
} from "../../lib/net/executor.ts";
import { Counters } from "../../lib/net/counters.ts";
import { Logger } from "../../lib/net/log.ts";
import type { Accept, DialHandlers, Socket, Transport } from "../../lib/net/transport.ts";
import { fixtureKey, TEST_NODE_SECRET } from "../helpers/keys.ts";
import { ALICE, BOB, config } from "../helpers/reducer.ts";
import { FakeTime } from "./fake_time.ts";
import { decodeBase64Url, encodeBase64Url } from "../../lib/protocol/base64url.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";

const serverKey = await fixtureKey("user6");
const aliceKey = await fixtureKey("user1");
const bobKey = await fixtureKey("user2");

/** The fake time of the test running now (set by `setup`; tests in a file run one at a time). */
let T: FakeTime;
/** Settle and move fake time until `cond` holds (see {@linkcode FakeTime.until}). */
const until = <R>(cond: () => R | undefined | false, what: string, ms?: number) => T.until(cond, what, ms);

/** A fake signature: by `key` over `payload` (checked by the executor's fake `verify`). */
const fakeSig = (key: string, payload: unknown) => `fake:${sha256HexSync(key + canonicalJson(payload))}`;

/** A user's signing side in these tests: their public key, and fake signatures by it. */
class Signer {
  constructor(readonly key: { publicKey: string }) {}
  text(f: Envelope): string {
    return serializeEnvelope({ ...f, sig: fakeSig(this.key.publicKey, f.payload) });
  }
}

/** The server's fake signer: every signature is `fakeSig(server key, payload)`, ready at once. */
const serverSigner = (): FrameSigner => {
  const text = (f: Envelope, sign: boolean) =>
    serializeEnvelope(sign ? { ...f, sig: fakeSig(serverKey.publicKey, f.payload) } : f);
  return {
    signatures: 0,
    sign: (p) => Promise.resolve(fakeSig(serverKey.publicKey, p)),
    text: (f, sign) => Promise.resolve(text(f, sign)),
    textNow: text,
  };
};

/** A socket that records what is sent to it and how it was closed. */
class FakeSocket implements Socket {
  sent: string[] = [];
  closedWith: { code?: number; reason?: string } | undefined;
  bufferedAmount = 0;
  open = true;
  onMessage: (data: unknown) => void = () => {};
  onClose: () => void = () => {};
  send(text: string): void {
    if (this.open) this.sent.push(text);
  }
  close(code?: number, reason?: string): void {
    if (!this.open) return;
    this.open = false;
    this.closedWith = { code, reason };
    queueMicrotask(() => this.onClose());
  }
  /** The frames received by the peer, parsed. */
  frames(): { type: string; from: string; to: string; payload: Record<string, unknown>; sig: string }[] {
    return this.sent.map((t) => JSON.parse(t));
  }
}

/** A transport whose dials always fail (the test accepts connections only). */
const fakeTransport: Transport = {
  listen: () => {
    throw new Error("not used");
  },
  dial: (_url: string, _timeoutMs: number, on: DialHandlers) => on.onFail("no network in this test"),
};

/** A store in memory that records every call. */
class MemoryStore implements StoreLike {
  calls: string[] = [];
  queue: { id: number; userId: string; frame: unknown; at: number }[] = [];
  outbox: { id: number; serverId: string; ref: string; frame: unknown; at: number }[] = [];
  private next = 1;
  upsertUser(u: UserRecord): void {
    this.calls.push(`upsertUser ${u.userId}`);
  }
  pinServer(s: ServerRecord): void {
    this.calls.push(`pinServer ${s.serverId}`);
  }
  setServerId(serverId: string): void {
    this.calls.push(`setServerId ${serverId}`);
  }
  setHome(userId: string, serverId: string): void {
    this.calls.push(`setHome ${userId} ${serverId}`);
  }
  enqueue(userId: string, frame: unknown, now: number): void {
    this.calls.push(`enqueue ${userId}`);
    this.queue.push({ id: this.next++, userId, frame, at: now });
  }
  queuedIds(userId: string, notBefore: number): number[] {
    this.queue = this.queue.filter((r) => r.userId !== userId || r.at >= notBefore);
    return this.queue.filter((r) => r.userId === userId).map((r) => r.id);
  }
  /** The most rows `storedFrames` was asked for at once. */
  largestPage = 0;
  storedFrames(table: "queue" | "outbox", ids: number[]): { id: number; frame: unknown }[] {
    this.largestPage = Math.max(this.largestPage, ids.length);
    return (table === "queue" ? this.queue : this.outbox).filter((r) => ids.includes(r.id))
      .sort((a, b) => a.id - b.id).map(({ id, frame }) => ({ id, frame }));
  }
  dequeue(ids: number[]): void {
    this.calls.push(`dequeue ${ids.join(",")}`);
    this.queue = this.queue.filter((r) => !ids.includes(r.id));
  }
  addOutbox(serverId: string, ref: string, frame: unknown, now: number): void {
    this.calls.push(`addOutbox ${serverId}`);
    this.outbox.push({ id: this.next++, serverId, ref, frame, at: now });
  }
  outboxIds(serverId: string, notBefore: number): number[] {
    this.outbox = this.outbox.filter((r) => r.serverId !== serverId || r.at >= notBefore);
    return this.outbox.filter((r) => r.serverId === serverId).map((r) => r.id);
  }
  ackOutbox(serverId: string, ref: string): void {
    this.calls.push(`ackOutbox ${serverId}`);
    this.outbox = this.outbox.filter((r) => r.serverId !== serverId || r.ref !== ref);
  }
  clearOutbox(serverId: string): void {
    this.calls.push(`clearOutbox ${serverId}`);
    this.outbox = this.outbox.filter((r) => r.serverId !== serverId);
  }
  deleteOutbox(ids: number[]): void {
    this.calls.push(`deleteOutbox ${ids.join(",")}`);
    this.outbox = this.outbox.filter((r) => !ids.includes(r.id));
  }
  acceptRef(_ref: string, _now: number): void {
    this.calls.push("acceptRef");
  }
  pinUser(userId: string): void {
    this.calls.push(`pinUser ${userId}`);
  }
  addSeen(entries: [string, number][]): void {
    this.calls.push(`addSeen ${entries.length}`);
  }
  setChannel(version: number): void {
    this.calls.push(`setChannel ${version}`);
  }
  addMember(memberId: string): void {
    this.calls.push(`addMember ${memberId}`);
  }
  setChannelKey(_creatorPub: string, _sealed: SealedKey): void {
    this.calls.push("setChannelKey");
  }
}

/**
 * An executor over the fakes, with the public channel already known (so no key is created). `many` lifts the
 * per-address limits (for tests with hundreds of users from 127.0.0.1); `signer` replaces the fake server signer and
 * `time` the fake time.
 */
function setup(opts: {
  onStoreFailed?: (e: unknown) => void;
  many?: boolean;
  signer?: FrameSigner;
  time?: FakeTime;
  limits?: Partial<Limits>;
} = {}) {
  const time = T = opts.time ?? new FakeTime();
  const store = new MemoryStore();
  const state = initState(config({ serverPub: serverKey.publicKey }));
  state.config.limits = { ...state.config.limits, ...opts.limits };
  state.channel = { version: 1, creatorPub: aliceKey.publicKey, members: new Set() };
  if (opts.many) {
    state.config.limits = {
      ...state.config.limits,
      maxConnsPerAddr: 10_000,
      helloPerSec: 1e6,
      helloBurst: 1e6,
    };
  }
  const lines: string[] = [];
  const ex = createExecutor({
    state,
    store,
    transport: fakeTransport,
    key: serverKey,
    secret: TEST_NODE_SECRET,
    channelKey: null,
    limits: state.config.limits,
    log: new Logger("debug", (l) => lines.push(l)),
    counters: new Counters(),
    onStoreFailed: opts.onStoreFailed ?? (() => {}),
    signer: opts.signer ?? serverSigner(),
    timers: time,
    now: time.clock,
    digest: (text) => Promise.resolve(sha256HexSync(text)),
    verify: (key, payload, sig) => Promise.resolve(sig === fakeSig(key, payload)),
  });
  ex.started();
  return { ex, store, lines, time };
}

/** A fake signer's wire text: the frame with `sig: "fake"` when signed. */
const fakeText = (f: Envelope, sign: boolean) => JSON.stringify(sign ? { ...f, sig: "fake" } : f);

/** Accept a connection from 127.0.0.1 through the executor; the socket opens on the next microtask. */
function accept(ex: Executor): FakeSocket {
  const sock = new FakeSocket();
  const acc: Accept = (_idle, onOpen) => {
    queueMicrotask(() => onOpen(sock));
    return { socket: sock, response: new Response(null, { status: 101 }) };
  };
  ex.upgrade("127.0.0.1", acc, 30);
  return sock;
}

/** A new connection whose first frame is `hello`; resolves once the hello is handed over. */
async function login(ex: Executor, key: Signer, hello: Record<string, unknown>): Promise<FakeSocket> {
  const sock = accept(ex);
  await Promise.resolve();
  await say(sock, key, hello);
  return sock;
}

/** Send a frame signed with `key` from the peer's side of `sock`. */
async function say(sock: FakeSocket, key: Signer, frame: Record<string, unknown>): Promise<void> {
  const parsed = parseFrame(JSON.stringify({ sig: "", ...frame }));
  if (!parsed.ok) throw new Error(parsed.error.detail);
  sock.onMessage(key.text(parsed.envelope));
  await Promise.resolve();
}

function hello(user: string, pub: string, now: number) {
  return {
    type: "USER_HELLO",
    from: user,
    to: "",
    ts: now,
    // As our clients send it: a payload ts and a nonce (PROFILE §16 proof of possession of a pinned key).
    payload: { client: "t", pubkey: pub, enc_pubkey: pub, ts: now, nonce: crypto.randomUUID() },
  };
}

/** Distinct RSA-4096 public keys without generating any: Alice's with a changed modulus (the node only parses them). */
const aliceSpki = decodeBase64Url(aliceKey.publicKey)!;
function distinctKey(i: number): string {
  const k = aliceSpki.slice();
  // The modulus ends 512 bytes before the exponent (02 03 01 00 01); change 4 bytes well inside it.
  new DataView(k.buffer).setUint32(aliceSpki.length - 512 - 5 + 100, i + 1);
  return encodeBase64Url(k);
}
const uid = (i: number) => `0be0c000-0000-4000-8000-${String(i).padStart(12, "0")}`;

/** A DM from Alice to Bob, the i-th. */
function dmToBob(now: number, i: number) {
  return {
    type: "MSG_DIRECT",
    from: ALICE,
    to: BOB,
    ts: now + i,
    payload: { ciphertext: `C${i}`, sender_pub: aliceKey.publicKey, content_sig: "S" },
  };
}

/** Alice online on socket `a`; Bob online on socket `b` (with `offline`, he has said hello and left again). */
async function aliceAndBob(ex: Executor, offline: boolean) {
  const alice = new Signer(aliceKey);
  const bob = new Signer(bobKey);
  const now = T.now;
  const a = await login(ex, alice, hello(ALICE, aliceKey.publicKey, now));
  const b = await login(ex, bob, hello(BOB, bobKey.publicKey, now));
  await until(() => ex.state().localUsers.has(BOB), "bob online");
  if (offline) {
    b.close(1000, "bye");
    await until(() => !ex.state().localUsers.has(BOB), "bob offline");
  }
  return { a, b, alice, bob, now, dm: (i: number) => say(a, alice, dmToBob(now, i)) };
}

Deno.test("a DM to an offline user is persisted, then handed over signed by the server and dequeued", async () => {
  const { ex, store } = setup();
  const alice = new Signer(aliceKey);
  const bob = new Signer(bobKey);
  const now = T.now;

  const a = await login(ex, alice, hello(ALICE, aliceKey.publicKey, now));
  await until(() => ex.state().localUsers.has(ALICE), "alice online");
  assert.ok(store.calls.includes(`upsertUser ${ALICE}`), store.calls.join("; "));

  await say(a, alice, {
    type: "MSG_DIRECT",
    from: ALICE,
    to: BOB,
    ts: now,
    payload: { ciphertext: "C", sender_pub: aliceKey.publicKey, content_sig: "S" },
  });
  // Bob is unknown: the reducer refuses the DM with an ERROR the executor signs with the server key.
  await until(() => a.frames().some((f) => f.type === "ERROR"), "an ERROR for the unknown user");

  const b = await login(ex, bob, hello(BOB, bobKey.publicKey, now));
  await until(() => ex.state().localUsers.has(BOB), "bob online");
  b.close(1000, "bye");
  await until(() => !ex.state().localUsers.has(BOB), "bob offline");

  await say(a, alice, {
    type: "MSG_DIRECT",
    from: ALICE,
    to: BOB,
    ts: now + 1,
    payload: { ciphertext: "C2", sender_pub: aliceKey.publicKey, content_sig: "S2" },
  });
  await until(() => store.queue.length === 1, "the DM queued for bob in the store");
  assert.ok(store.calls.includes(`enqueue ${BOB}`));

  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 2));
  const deliver = await until(
    () => b2.frames().find((f) => f.type === "USER_DELIVER"),
    "the queued DM delivered to bob",
  );
  assert.equal(deliver.payload.ciphertext, "C2");
  assert.equal(deliver.from, ex.state().config.serverId);
  assert.equal(
    deliver.sig,
    fakeSig(serverKey.publicKey, deliver.payload),
    "the delivered frame carries the server's signature over its payload as delivered",
  );
  await until(() => store.queue.length === 0, "the delivered row dequeued");
  assert.ok(store.calls.some((c) => c.startsWith("dequeue ")));

  ex.stop();
  assert.equal(a.closedWith?.code, 1001);
  assert.equal(b2.closedWith?.code, 1001);
  await until(() => ex.connections() === 0, "every connection gone");
});

Deno.test("DMs that never reached a closed socket go to the offline queue, and a cut hand-over keeps the rest", async () => {
  const { ex, store } = setup();
  const { a, b, alice, bob, now } = await aliceAndBob(ex, false);

  // Bob's socket is gone but the runtime has not said so yet: live DMs for him must not vanish.
  b.open = false;
  for (let i = 0; i < 3; i++) {
    await say(a, alice, {
      type: "MSG_DIRECT",
      from: ALICE,
      to: BOB,
      ts: now + i,
      payload: { ciphertext: `C${i}`, sender_pub: aliceKey.publicKey, content_sig: "S" },
    });
  }
  await until(() => store.queue.length === 3, "the three DMs queued for bob");
  assert.equal(ex.state().queued.get(BOB), 3);
  b.onClose();
  await until(() => !ex.state().localUsers.has(BOB), "bob offline");

  // Bob comes back on a socket that dies after the first queued DM: one row is delivered and dequeued, the other
  // two stay queued, and the reducer knows (his next hello gets them).
  const b2 = accept(ex);
  const send = b2.send.bind(b2);
  b2.send = (text: string) => {
    send(text);
    if (JSON.parse(text).type === "USER_DELIVER") b2.open = false;
  };
  await Promise.resolve();
  await say(b2, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => ex.state().queued.get(BOB) === 2, "two rows still queued in the reducer's count");
  assert.deepEqual(b2.frames().filter((f) => f.type === "USER_DELIVER").map((f) => f.payload.ciphertext), [
    "C0",
  ]);
  assert.deepEqual(
    store.queue.map((r) => (r.frame as { payload: { ciphertext: string } }).payload.ciphertext),
    [
      "C1",
      "C2",
    ],
  );
  b2.onClose();
  await until(() => !ex.state().localUsers.has(BOB), "bob offline again");

  const b3 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 20));
  await until(() => store.queue.length === 0, "the rest delivered and dequeued");
  assert.deepEqual(b3.frames().filter((f) => f.type === "USER_DELIVER").map((f) => f.payload.ciphertext), [
    "C1",
    "C2",
  ]);
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone");
});

Deno.test("a hello at N users online: the ACK leaves at once and the fan-out goes out at most ~1 MiB per turn", async () => {
  // Frames are "signed" by a fake signer (RSA for 700 adverts would take the test's time); the executor, the
  // reducer and the inbound pipeline are the real ones. Each socket only counts what it is handed.
  const texts = new WeakMap<object, string>();
  const textOf = (f: Envelope, sign: boolean) => {
    let t = texts.get(f);
    if (t === undefined) texts.set(f, t = fakeText(f, sign));
    return t;
  };
  const { ex, time } = setup({
    many: true,
    signer: {
      signatures: 0,
      sign: () => Promise.resolve("fake"),
      text: (f, sign) => Promise.resolve(textOf(f, sign)),
      textNow: textOf,
    },
  });
  // The executor resumes its backlog on the next turn of the (fake) event loop: one batch of next-turn callbacks.
  const turnNow = () => time.turns;
  const turnOf: number[] = []; // the turn each of the newcomer's frames was handed over in
  /** Bytes handed to sockets, per executor turn. */
  const perTurn = new Map<number, number>();
  const open = (log?: string[]) => {
    const sock = new FakeSocket();
    sock.send = (t: string) => {
      const turn = turnNow();
      perTurn.set(turn, (perTurn.get(turn) ?? 0) + t.length);
      if (log) log.push(JSON.parse(t).type);
      if (log) turnOf.push(turn);
    };
    const acc: Accept = (_idle, onOpen) => {
      queueMicrotask(() => onOpen(sock));
      return { socket: sock, response: new Response(null, { status: 101 }) };
    };
    ex.upgrade("127.0.0.1", acc, 30);
    return sock;
  };
  const hi = (sock: FakeSocket, i: number) =>
    sock.onMessage(JSON.stringify({ ...hello(uid(i), distinctKey(i), T.now), sig: "" }));
  const N = 700;
  for (let i = 0; i < N; i++) {
    const s = open();
    await Promise.resolve();
    hi(s, i);
  }
  await until(() => ex.state().localUsers.size === N, `${N} users online`, 30_000);
  await until(() => ex.effectsWaiting() === 0 && ex.maxUnsent() === 0, "the ramp handed over", 30_000);
  await T.settle();

  perTurn.clear();
  const seen: string[] = [];
  const newcomer = open(seen);
  await Promise.resolve();
  const first = turnNow();
  hi(newcomer, N);
  await until(
    () => seen.filter((t) => t === "USER_ADVERTISE").length === N + 1,
    "the snapshot of N adverts and the newcomer's own",
    30_000,
  );
  await T.settle(); // the newcomer's advert reaches everyone
  assert.equal(seen[0], "ACK", "the ACK is the newcomer's first frame");
  assert.ok(turnOf[0] < turnOf[turnOf.length - 1], "the ACK left turns before the end of the snapshot");
  const turns = [...perTurn.entries()].filter(([t]) => t >= first);
  const total = turns.reduce((n, [, b]) => n + b, 0);
  const most = Math.max(...turns.map(([, b]) => b));
  console.log(
    `  hello at ${N} users: ${
      (total / 1048576).toFixed(2)
    } MiB handed to sockets over ${turns.length} turns, ` +
      `at most ${(most / 1048576).toFixed(2)} MiB in one`,
  );
  assert.ok(total > 2 * 1048576, "the fan-out is large enough to need several turns");
  assert.ok(most <= 1048576 + 8192, `${most} bytes handed to sockets in one turn`);
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone", 10_000);
});

Deno.test("a connection silent past the first-frame limit gets its ERROR first, then the reducer's close", async () => {
  const { ex } = setup();
  const s = accept(ex);
  await Promise.resolve();
  ex.dispatch({ kind: "tick", now: T.now + ex.state().config.limits.firstFrameMs + 1 });
  await until(() => s.closedWith, "the socket closed");
  assert.deepEqual(s.frames().map((f) => [f.type, f.payload.code]), [["ERROR", "TIMEOUT"]]);
  assert.equal(s.closedWith?.code, 1008);
  await until(() => ex.connections() === 0, "the connection gone");
  ex.stop();
});

Deno.test("a failed store write is logged and reported to the node (which stops: crash-only)", async () => {
  const failures: unknown[] = [];
  const { ex, store, lines } = setup({ onStoreFailed: (e) => failures.push(e) });
  store.upsertUser = () => {
    throw new Error("disk full");
  };
  await login(ex, new Signer(aliceKey), hello(ALICE, aliceKey.publicKey, T.now));
  await until(() => failures.length > 0, "the failure reported");
  assert.match(String(failures[0]), /disk full/);
  assert.ok(lines.some((l) => l.includes("store.write_failed")));
  ex.stop();
  await until(() => ex.connections() === 0, "the connection gone");
});

/** An executor with a fake signer whose `sign` waits for the test (`release`), and turns the test can hold. */
function gated() {
  const gates: (() => void)[] = [];
  const { ex, store, time } = setup({
    many: true,
    signer: {
      signatures: 0,
      sign: () => new Promise<string>((r) => gates.push(() => r("fake"))),
      text: (f, sign) => Promise.resolve(fakeText(f, sign)),
      textNow: fakeText,
    },
  });
  return {
    ex,
    store,
    gates,
    release: (n = gates.length) => gates.splice(0, n).forEach((g) => g()),
    /** While on, the test holds the executor's next turns (they run at `runTurns`). */
    manualTurns: (on: boolean) => void (time.hold = on),
    /** Run the executor's pending turns until none is left. */
    runTurns: () => time.settle(),
  };
}

Deno.test("a user who reconnects during a cut hand-over gets each queued DM once", async () => {
  const { ex, store, gates, release } = gated();
  const { a, alice, bob, now } = await aliceAndBob(ex, true);
  await say(a, alice, dmToBob(now, 1));
  await say(a, alice, dmToBob(now, 2));
  await until(() => store.queue.length === 2, "two DMs queued");

  // Bob logs in; his hand-over waits for its two signatures, and the connection dies meanwhile.
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => gates.length === 2, "the hand-over signs its two rows");
  b2.open = false;
  b2.onClose();
  await until(() => !ex.state().localUsers.has(BOB), "bob offline again");
  // A third DM is queued, and Bob is back at once: his hello reads all three rows.
  await say(a, alice, dmToBob(now, 3));
  await until(() => store.queue.length === 3, "three DMs queued");
  const b3 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 20));
  await until(() => gates.length >= 3, "the new hand-over signs its rows");
  await T.settle();
  // The first hand-over's signatures arrive: it finds its socket closed and gives its two rows back.
  release(2);
  await T.settle();
  release();
  await T.settle();
  release();
  await until(() => store.queue.length === 0, "every row delivered and dequeued");
  await T.settle();
  const got = b3.frames().filter((f) => f.type === "USER_DELIVER").map((f) => f.payload.ciphertext);
  assert.deepEqual(got.toSorted(), ["C1", "C2", "C3"], `bob got ${got.join(",")}`);
  assert.equal(
    ex.state().queued.get(BOB) ?? 0,
    0,
    "the reducer's count matches the store (nothing given back twice)",
  );
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone");
});

Deno.test("a session that takes over while the old one hands the queue over: each queued DM reaches one of them once", async () => {
  const { ex, store, gates, release } = gated();
  const { a, alice, bob, now } = await aliceAndBob(ex, true);
  await say(a, alice, dmToBob(now, 1));
  await say(a, alice, dmToBob(now, 2));
  await until(() => store.queue.length === 2, "two DMs queued");
  // Bob's first session starts the hand-over (waiting for its signatures) and a second one takes over meanwhile:
  // the old session is closed after what was queued on it, so its hand-over still sends.
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => gates.length === 2, "the hand-over signs its two rows");
  const b3 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 20));
  await until(() => b3.frames().some((f) => f.type === "ACK"), "the new session accepted");
  release();
  await until(() => b2.closedWith, "the old session closed");
  await until(
    () => store.queue.length === 0 && gates.length === 0 && ex.effectsWaiting() === 0,
    "all settled",
  );
  const got = [b2, b3].flatMap((s) => s.frames().filter((f) => f.type === "USER_DELIVER"))
    .map((f) => f.payload.ciphertext);
  assert.deepEqual(got.toSorted(), ["C1", "C2"], `delivered ${got.join(",")}`);
  assert.equal(ex.state().queued.get(BOB) ?? 0, 0, "the reducer's count matches the store");
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone");
});

Deno.test("queue rows one session hands over are not handed over again by another (Claims): each DM reaches bob once", async () => {
  const { ex, store, gates, release } = gated();
  const { bob, now, dm } = await aliceAndBob(ex, true);
  await dm(1);
  await dm(2);
  await until(() => store.queue.length === 2, "two DMs queued");
  // Session 1's hand-over of rows 1-2 waits for its signatures, and the session is cut meanwhile.
  const b1 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => gates.length === 2, "session 1's hand-over signs its two rows");
  b1.open = false;
  b1.onClose();
  await until(() => !ex.state().localUsers.has(BOB), "bob offline");
  // A third DM is queued; session 2's hello reads all three rows, while rows 1-2 are still session 1's.
  await dm(3);
  await until(() => store.queue.length === 3, "three DMs queued");
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 20));
  await until(() => gates.length > 2, "session 2's hand-over signs its rows");
  // Session 3 takes over: session 2 is closed after what is queued on it, so its hand-over still sends.
  const b3 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 30));
  await until(() => b3.frames().some((f) => f.type === "ACK"), "session 3 accepted");
  // Session 1's signatures arrive: its socket is gone, so it gives its rows back, and they are handed over on
  // session 3 while session 2's hand-over still waits. Then every signature arrives.
  const held = gates.length - 2;
  release(2);
  await until(() => gates.length > held, "session 3's hand-over signs the rows given back");
  release();
  await until(
    () => store.queue.length === 0 && gates.length === 0 && ex.effectsWaiting() === 0,
    "every row delivered and dequeued, all settled",
  );
  await T.settle();
  const got = [b1, b2, b3].map((s) =>
    s.frames().filter((f) => f.type === "USER_DELIVER").map((f) => f.payload.ciphertext as string)
  );
  assert.deepEqual(got.flat().toSorted(), ["C1", "C2", "C3"], `sessions 1, 2, 3 got ${JSON.stringify(got)}`);
  assert.equal(ex.state().queued.get(BOB) ?? 0, 0, "the reducer's count matches the store");
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone");
});

Deno.test("a hand-over whose connection is gone before its turn keeps the reducer's count", async () => {
  const { ex, store, manualTurns, runTurns } = gated();
  const unsignedHello = (s: FakeSocket, i: number) =>
    s.onMessage(JSON.stringify({ ...hello(uid(i), distinctKey(i), T.now), sig: "" }));
  const N = 500;
  for (let i = 0; i < N; i++) {
    const s = accept(ex);
    await Promise.resolve();
    unsignedHello(s, i);
  }
  await until(() => ex.state().localUsers.size === N, `${N} users online`, 30_000);
  const { a, alice, bob, now } = await aliceAndBob(ex, true);
  for (const i of [1, 2]) await say(a, alice, dmToBob(now, i));
  await until(
    () => store.queue.length === 2 && ex.effectsWaiting() === 0,
    "two DMs queued, all settled",
    30_000,
  );

  // A newcomer's hello fans out more than 1 MiB: the rest waits for the next turn (held here by the test).
  manualTurns(true);
  const x = accept(ex);
  await Promise.resolve();
  unsignedHello(x, N);
  await until(() => ex.effectsWaiting() > 0, "the fan-out waits for a turn");
  // Bob logs in (his hand-over waits behind the fan-out) and is gone again before its turn.
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => ex.state().localUsers.has(BOB), "bob online");
  b2.open = false;
  b2.onClose();
  await until(() => !ex.state().localUsers.has(BOB), "bob offline");
  manualTurns(false);
  await runTurns();
  await until(() => ex.effectsWaiting() === 0, "the backlog ran");
  assert.equal(store.queue.length, 2, "the rows are still in the store");
  assert.equal(ex.state().queued.get(BOB) ?? 0, 2, "the reducer's count matches the store");
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone", 10_000);
});

Deno.test("after a failed store write (outside a persist effect) nothing more is written", async () => {
  const failures: unknown[] = [];
  const { ex, store } = setup({ onStoreFailed: (e) => failures.push(e) });
  const { a, alice, bob, now } = await aliceAndBob(ex, true);
  await say(a, alice, dmToBob(now, 1));
  await until(() => store.queue.length === 1, "a DM queued");
  store.dequeue = () => {
    throw new Error("disk full");
  };
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => failures.length === 1, "the failed dequeue reported");
  b2.close(1000, "bye");
  await until(() => !ex.state().localUsers.has(BOB), "bob offline");
  const before = store.calls.length;
  assert.equal(ex.state().queued.get(BOB) ?? 0, 0);
  await say(a, alice, dmToBob(now, 2)); // the node is stopping (crash-only); this frame was read before the close
  // The reducer handled the DM (it decided to queue it: its count went up), and in the same step the executor
  // carried out none of its effects.
  await until(() => ex.state().queued.get(BOB) === 1, "the DM reduced");
  assert.deepEqual(store.calls.slice(before), [], "no store write after the failed one");
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone");
});

Deno.test("a live DM that missed a closed socket goes to the user's new connection", async () => {
  const gates: (() => void)[] = [];
  const { ex, store } = setup({
    signer: {
      signatures: 0,
      sign: () => Promise.resolve("fake"),
      // A DM's signature takes time (the test releases it); everything else is ready at once.
      text: (f, sign) =>
        f.type === "USER_DELIVER"
          ? new Promise((r) => gates.push(() => r(fakeText(f, sign))))
          : Promise.resolve(fakeText(f, sign)),
      textNow: (f, sign) => f.type === "USER_DELIVER" ? undefined : fakeText(f, sign),
    },
  });
  const { a, b: b1, alice, bob, now } = await aliceAndBob(ex, false);
  await say(a, alice, {
    type: "MSG_DIRECT",
    from: ALICE,
    to: BOB,
    ts: now + 1,
    payload: { ciphertext: "C1", sender_pub: aliceKey.publicKey, content_sig: "S" },
  });
  await until(() => gates.length === 1, "the DM is being signed");
  b1.close(1006, "gone");
  await until(() => !ex.state().localUsers.has(BOB), "bob offline");
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + 10));
  await until(() => ex.state().localUsers.has(BOB), "bob back");
  gates.splice(0).forEach((g) => g()); // the signature arrives: the old socket is closed
  await until(() => gates.length > 0, "the DM re-sent, signed again for the new connection");
  gates.splice(0).forEach((g) => g());
  await until(
    () => b2.frames().some((f) => f.type === "USER_DELIVER"),
    "bob gets the DM on the new connection",
  );
  assert.equal(store.queue.length, 0, "nothing queued");
  ex.stop();
  await until(() => ex.connections() === 0, "every connection gone");
});

/** A signer that never signs a USER_DELIVER (they stay held, waiting for us); `stuck` has them. */
function stuckSigner() {
  const real = serverSigner();
  const stuck = new Set<unknown>();
  const signer: FrameSigner = {
    signatures: 0,
    sign: (p) => real.sign(p),
    text: (f, sign) =>
      f.type === "USER_DELIVER" ? new Promise<string>(() => stuck.add(f)) : real.text(f, sign),
  };
  return { signer, stuck };
}

/** Alice's i-th DM to Bob with `bytes` of ciphertext. */
const bigDm = (now: number, i: number, bytes: number) => ({
  ...dmToBob(now, i),
  payload: { ...dmToBob(now, i).payload, ciphertext: `${i}`.padEnd(bytes, "C") },
});

Deno.test("frames held for a peer that is behind are bounded by bytes, signed or not: past maxUnsentBytes it is cut", async () => {
  // USER_DELIVERs are never signed here: they wait for us, not for Bob, but they take memory all the same.
  const { signer, stuck } = stuckSigner();
  const maxUnsentBytes = 300_000;
  const { ex, store, lines } = setup({ signer, limits: { maxUnsentBytes } });
  const { a, b, alice, now } = await aliceAndBob(ex, false);
  b.bufferedAmount = 100_000; // Bob does not take what his socket was given: he is behind
  for (let i = 0; i < 15; i++) await say(a, alice, bigDm(now, i, 20_000));
  await until(() => b.closedWith, "bob cut");
  assert.deepEqual(b.closedWith, { code: 1008, reason: "too slow" });
  const cut = lines.find((l) => /conn\.too_slow/.test(l))!;
  const held = Number(/unsent_bytes=(\d+)/.exec(cut)![1]);
  // Cut at the first frame that would pass the bound: never more than one frame over it.
  assert.ok(held > maxUnsentBytes && held < maxUnsentBytes + 25_000, cut);
  assert.ok(100_000 + stuck.size * 20_000 <= maxUnsentBytes, `${stuck.size} frames held`);
  // What Bob's connection never held goes to his offline queue (he is offline now).
  await until(() => store.queue.length === 15 - stuck.size, "the rest queued for bob");
  ex.stop();
});

Deno.test("frames waiting for our signatures do not cut a reader that keeps up, until four times the bound", async () => {
  const { signer, stuck } = stuckSigner();
  const maxUnsentBytes = 300_000;
  const { ex, lines } = setup({ signer, limits: { maxUnsentBytes } });
  const { a, b, alice, now } = await aliceAndBob(ex, false);
  // Bob's socket buffer stays empty (he reads): 500 KB waiting for signatures is the node's delay, not his.
  for (let i = 0; i < 5; i++) await say(a, alice, bigDm(now, i, 100_000));
  await until(() => stuck.size === 5, "five DMs held for bob");
  assert.equal(b.closedWith, undefined, "not cut");
  // Past four times the bound, memory wins: cut.
  for (let i = 5; i < 14 && !b.closedWith; i++) await say(a, alice, bigDm(now, i, 100_000));
  await until(() => b.closedWith, "bob cut at the cap");
  const held = Number(/unsent_bytes=(\d+)/.exec(lines.find((l) => /conn\.too_slow/.test(l))!)![1]);
  assert.ok(held > 4 * maxUnsentBytes && held < 4 * maxUnsentBytes + 110_000, `${held}`);
  ex.stop();
});

Deno.test("a long offline queue is read from the store a page at a time and handed over whole, in order", async () => {
  const { ex, store } = setup();
  const { b, bob, now, dm } = await aliceAndBob(ex, true);
  assert.equal(b.open, false);
  const n = 3 * STORED_PAGE + 5;
  for (let i = 0; i < n; i++) await dm(i);
  await until(() => store.queue.length === n, "the DMs queued for bob");
  const b2 = await login(ex, bob, hello(BOB, bobKey.publicKey, now + n));
  await until(
    () => b2.frames().filter((f) => f.type === "USER_DELIVER").length === n,
    "the queue handed over",
  );
  assert.deepEqual(
    b2.frames().filter((f) => f.type === "USER_DELIVER").map((f) => f.payload.ciphertext),
    Array.from({ length: n }, (_, i) => `C${i}`),
  );
  await until(() => store.queue.length === 0, "every row dequeued");
  assert.ok(store.largestPage <= STORED_PAGE, `${store.largestPage} rows read at once`);
  ex.stop();
});
