/**
 * The persist mapping (lib/net/persist.ts) alone: each reducer persist op reaches the store as the call that makes
 * it durable (read back from the real store over in-memory SQLite), seen-cache keys are batched rather than
 * written one by one, an outbox row is kept under the msg_ref its ACK names, and the crash-only wrapper refuses
 * every write after a failed one.
 */
import assert from "node:assert/strict";
import type { Effect, PersistOp } from "../../lib/core/types.ts";
import { Store } from "../../lib/store/sqlite.ts";
import {
  CrashOnlyWrites,
  groupPersists,
  outboxRef,
  persist,
  type PersistAll,
  persistAll,
} from "../../lib/net/persist.ts";
import type { StoreLike } from "../../lib/net/ports.ts";
import { Logger } from "../../lib/net/log.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";
import { ALICE, BOB, SERVER } from "../helpers/reducer.ts";

const OTHER = "0be0c000-0000-4000-8000-000000000009";
const NOW = 1_700_000_000_000;
const dm = (to: string): Envelope =>
  ({
    type: "USER_DELIVER",
    from: SERVER,
    to,
    ts: NOW,
    payload: { ciphertext: "C", sender: ALICE, sender_pub: "K", content_sig: "S" },
    sig: "",
  }) as unknown as Envelope;

/** Every persist op once. */
const ops: PersistOp[] = [
  { op: "setServerId", serverId: SERVER },
  { op: "upsertUser", user: { userId: ALICE, pubkey: "KA", encPubkey: "KA", meta: null, version: 1 } },
  { op: "pinServer", server: { serverId: OTHER, host: "127.0.0.1", port: 9, pubkey: "KS" } },
  { op: "setHome", userId: BOB, serverId: OTHER },
  { op: "enqueue", userId: ALICE, frame: dm(ALICE), now: NOW },
  { op: "outbox", serverId: OTHER, frame: dm(BOB), now: NOW },
  { op: "channel", version: 3, creatorPub: "KC" },
  { op: "acceptRef", ref: "ref-1", now: NOW },
  { op: "pinUser", userId: ALICE, pubkey: "KA", now: NOW },
  { op: "seen", key: "seen-1", exp: NOW + 60_000 },
  { op: "seen", key: "seen-2", exp: NOW + 60_000 },
  { op: "member", memberId: ALICE, wrappedKey: "W", now: NOW },
];

Deno.test("every persist op is made durable in the real store, and reads back at the next start", () => {
  const store = Store.open(":memory:");
  try {
    // The channel's sealed key is what makes load() report a channel (it is the holder's write, not a persist op).
    store.setChannelKey("KC", { v: 1 } as never);
    const seen: [string, number][] = [];
    for (const op of ops) persist(store, op, NOW, seen);
    assert.deepEqual(seen, [["seen-1", NOW + 60_000], ["seen-2", NOW + 60_000]], "seen keys are batched");
    assert.deepEqual(store.load(NOW).seen, [], "nothing of the batch is written by persist itself");
    store.addSeen(seen, NOW);
    const l = store.load(NOW);
    assert.deepEqual(l.users.map((u) => u.userId), [ALICE]);
    assert.deepEqual(l.servers.map((s) => [s.serverId, s.host, s.port, s.pubkey]), [[
      OTHER,
      "127.0.0.1",
      9,
      "KS",
    ]]);
    assert.deepEqual(l.homes, [[BOB, OTHER]]);
    assert.deepEqual(l.queued, [[ALICE, 1]]);
    assert.deepEqual(l.outbox, [[OTHER, 1]]);
    assert.equal(l.channel?.version, 3);
    assert.deepEqual(l.channel?.members, [ALICE]);
    assert.deepEqual(l.acceptedRefs, [["ref-1", NOW]]);
    assert.deepEqual(l.pins, [[ALICE, "KA"]]);
    assert.deepEqual(l.seen.map(([k]) => k), ["seen-1", "seen-2"]);
    // The outbox row is kept under the msg_ref of its payload: the peer's ACK of that ref deletes it.
    store.ackOutbox(OTHER, outboxRef(dm(BOB).payload));
    assert.deepEqual(store.load(NOW).outbox, []);
  } finally {
    store.close();
  }
});

/** A store that records each call as `name(args)`. */
function recording(): { store: StoreLike; calls: string[] } {
  const calls: string[] = [];
  const store = new Proxy({}, {
    get: (_t, name) => (...args: unknown[]) => void calls.push(`${String(name)} ${JSON.stringify(args)}`),
  }) as StoreLike;
  return { store, calls };
}

Deno.test("the mapping: times from the op where it has one, the caller's clock where not", () => {
  const { store, calls } = recording();
  const seen: [string, number][] = [];
  const at = (op: PersistOp) => {
    calls.length = 0;
    persist(store, op, 42, seen);
    return calls;
  };
  assert.deepEqual(at(ops[1]), [`upsertUser ${JSON.stringify([(ops[1] as { user: unknown }).user, 42])}`]);
  assert.deepEqual(at({ op: "channel", version: 3, creatorPub: "KC" }), [`setChannel [3,"KC",42]`]);
  assert.deepEqual(at({ op: "acceptRef", ref: "r", now: 7 }), [`acceptRef ["r",7]`]);
  assert.deepEqual(
    at({ op: "enqueue", userId: ALICE, frame: dm(ALICE), now: 7 }).map((c) => c.split(" ")[0]),
    [
      "enqueue",
    ],
  );
  assert.deepEqual(at({ op: "seen", key: "k", exp: 9 }), [], "a seen key waits for the batch");
  assert.deepEqual(seen, [["k", 9]]);
});

Deno.test("crash-only writes: the first failure is logged and reported once, and nothing is written after it", () => {
  const lines: string[] = [];
  const failures: unknown[] = [];
  const writes = new CrashOnlyWrites(new Logger("debug", (l) => lines.push(l)), (e) => failures.push(e));
  let ran = 0;
  assert.equal(writes.write(() => ran++), true);
  assert.equal(writes.failed, false);
  assert.equal(
    writes.write(() => {
      throw new Error("disk full");
    }),
    false,
  );
  assert.equal(writes.failed, true);
  assert.equal(writes.write(() => ran++), false, "refused after the failure");
  assert.equal(ran, 1, "the write after the failure never ran");
  assert.equal(failures.length, 1);
  assert.match(String(failures[0]), /disk full/);
  assert.ok(lines.some((l) => l.includes("store.write_failed")));
});

Deno.test("crash-only reads: a failed read is reported like a failed write, and nothing is read or written after it", () => {
  const lines: string[] = [];
  const failures: [unknown, string][] = [];
  const writes = new CrashOnlyWrites(
    new Logger("debug", (l) => lines.push(l)),
    (e, op) => failures.push([e, op]),
  );
  assert.deepEqual(writes.read(() => [1, 2]), [1, 2]);
  assert.equal(
    writes.read(() => {
      throw new Error("no such table: queue");
    }),
    undefined,
  );
  assert.equal(writes.failed, true);
  let ran = 0;
  assert.equal(writes.read(() => ran++), undefined, "no read after the failure");
  assert.equal(writes.write(() => ran++), false, "no write after the failure");
  assert.equal(ran, 0);
  assert.equal(failures.length, 1);
  assert.match(String(failures[0][0]), /no such table/);
  assert.equal(failures[0][1], "read");
  assert.ok(lines.some((l) => l.includes("store.read_failed")));
});

Deno.test("a step's persist effects are one transaction: a failure in the second leaves nothing of the first", () => {
  const effects: Effect[] = [
    { kind: "persist", op: { op: "enqueue", userId: ALICE, frame: dm(ALICE), now: NOW } },
    { kind: "log", level: "info", event: "dm.queued", fields: {} },
    { kind: "send", conn: 1, frame: dm(BOB), sign: true },
    { kind: "persist", op: { op: "acceptRef", ref: "ref-9", now: NOW } },
    { kind: "deliverQueued", conn: 2, userId: BOB, notBefore: 0 },
    { kind: "persist", op: { op: "setHome", userId: BOB, serverId: OTHER } },
  ];
  const grouped = groupPersists(effects);
  assert.deepEqual(grouped.map((fx) => fx.kind), [
    "persistAll",
    "log",
    "send",
    "deliverQueued",
    "persistAll",
  ]);
  const first = grouped[0] as PersistAll;
  assert.deepEqual(
    first.ops.map((o) => o.op),
    ["enqueue", "acceptRef"],
    "moved up past a log line and a send",
  );

  const store = Store.open(":memory:");
  try {
    // The second write fails (as a full disk would): the first is rolled back with it.
    const failing: StoreLike = Object.assign(Object.create(store), {
      tx: <T>(fn: () => T) => store.tx(fn),
      acceptRef: () => {
        throw new Error("disk full");
      },
    });
    assert.throws(() => persistAll(failing, first.ops, NOW, []), /disk full/);
    assert.deepEqual(store.queuedIds(ALICE, 0), [], "the DM is not queued without its msg_ref");
    persistAll(store, first.ops, NOW, []);
    assert.equal(store.queuedIds(ALICE, 0).length, 1);
  } finally {
    store.close();
  }
});
