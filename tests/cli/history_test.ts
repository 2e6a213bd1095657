/**
 * The terminal's history store (lib/cli/history.ts) on a real folder: sealed records (no plaintext on disk, the
 * key wrapped to the user's RSA key), send order by original ts, a corrupt or truncated tail skipped without
 * losing the good records, bounds and compaction, forget one and all, another identity refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type HistoryMessage, HistoryStore } from "../../lib/cli/history.ts";
import { fixtureKey } from "../helpers/keys.ts";

const [aliceKey, bobKey] = await Promise.all(["user5", "user6"].map(fixtureKey));
const ALICE = "a11ce000-0000-4000-8000-0000000000a1";
const BOB = "b0b00000-0000-4000-8000-0000000000b0";

function msg(text: string, ts: number, over: Partial<HistoryMessage> = {}): HistoryMessage {
  return {
    id: crypto.randomUUID(),
    conv: BOB,
    convLabel: "bob",
    ts,
    dir: "in",
    from: BOB,
    fromLabel: "bob",
    text,
    verified: true,
    state: "received",
    ...over,
  };
}

const texts = (h: HistoryStore, conv = BOB) => h.page(conv, 0, 1e9).messages.map((m) => m.text);

function tempDir(): string {
  return join(Deno.makeTempDirSync({ prefix: "socp-history-" }), "history", "alice");
}

Deno.test("records survive a reopen in send order; the files hold no plaintext and are private", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey);
  h.add(msg("second secret-words-42", 2000));
  h.add(msg("first", 1000)); // arrives later, sent earlier
  const out = msg("ours", 1500, { id: "m1", dir: "out", from: ALICE, fromLabel: "you", state: "sending" });
  h.add(out);
  h.setState("m1", "accepted");
  h.add(msg("hello all", 3000, { conv: "public", convLabel: "all" }));
  await h.flush();

  const log = Deno.readTextFileSync(join(dir, "history.log"));
  for (const word of ["secret-words-42", "first", "hello all", BOB, '"bob"', "public", "accepted"]) {
    assert.ok(!log.includes(word), `"${word}" is not in the log`);
  }
  const keyText = Deno.readTextFileSync(join(dir, "key.json"));
  assert.equal(JSON.parse(keyText).userId, ALICE);
  assert.equal(Deno.statSync(join(dir, "history.log")).mode! & 0o777, 0o600);
  assert.equal(Deno.statSync(join(dir, "key.json")).mode! & 0o777, 0o600);
  assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);

  const again = await HistoryStore.open(dir, ALICE, aliceKey);
  assert.equal(again.skipped, 0);
  assert.deepEqual(texts(again), ["first", "ours", "second secret-words-42"]);
  assert.equal(again.page(BOB, 0, 10).messages[1].state, "accepted");
  assert.deepEqual(texts(again, "public"), ["hello all"]);
});

Deno.test("a burst of records is one write", async () => {
  const h = await HistoryStore.open(tempDir(), ALICE, aliceKey);
  for (let i = 0; i < 200; i++) h.add(msg(`m${i}`, i));
  await h.flush();
  assert.ok(h.writes <= 2, `200 records in ${h.writes} writes`);
});

Deno.test("paging: the newest page, then earlier ones, until the start", async () => {
  const h = await HistoryStore.open(tempDir(), ALICE, aliceKey);
  for (let i = 1; i <= 45; i++) h.add(msg(`m${i}`, i * 10));
  const p1 = h.page(BOB, 0, 20);
  assert.equal(p1.total, 45);
  assert.deepEqual(p1.messages.map((m) => m.text), Array.from({ length: 20 }, (_, i) => `m${i + 26}`));
  assert.deepEqual(h.page(BOB, 20, 20).messages.map((m) => m.text)[0], "m6");
  assert.deepEqual(h.page(BOB, 40, 20).messages.map((m) => m.text), ["m1", "m2", "m3", "m4", "m5"]);
  assert.equal(h.page(BOB, 45, 20).messages.length, 0);
  await h.flush();
});

Deno.test("a truncated tail and a corrupt line are skipped; the good records stay, and new ones still open", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey);
  for (let i = 1; i <= 5; i++) h.add(msg(`m${i}`, i));
  await h.flush();
  const path = join(dir, "history.log");
  const lines = Deno.readTextFileSync(path).split("\n").filter(Boolean);
  // Flip a byte inside the third record, and cut the last one in the middle (a crash while writing).
  const bad = lines[2].slice(0, 30) + (lines[2][30] === "A" ? "B" : "A") + lines[2].slice(31);
  const cut = lines[4].slice(0, Math.floor(lines[4].length / 2));
  Deno.writeTextFileSync(path, [lines[0], lines[1], bad, lines[3], cut].join("\n")); // no final newline

  const h2 = await HistoryStore.open(dir, ALICE, aliceKey);
  assert.equal(h2.skipped, 2);
  assert.deepEqual(texts(h2), ["m1", "m2", "m4"]);
  h2.add(msg("after", 10));
  await h2.flush();
  const h3 = await HistoryStore.open(dir, ALICE, aliceKey);
  assert.equal(
    h3.skipped,
    0,
    "the damaged lines were compacted away, the new record is on a line of its own",
  );
  assert.deepEqual(texts(h3), ["m1", "m2", "m4", "after"]);

  // Garbage that is not even base64 or JSON never crashes the load.
  Deno.writeTextFileSync(path, "\u0000\u00ff{not base64}\n" + "A".repeat(5000) + "\n", { append: true });
  const h4 = await HistoryStore.open(dir, ALICE, aliceKey);
  assert.equal(h4.skipped, 2);
  assert.deepEqual(texts(h4), ["m1", "m2", "m4", "after"]);
  await h4.flush();
});

Deno.test("each conversation keeps its newest N; the file is compacted when it doubles", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey, { perConversation: 50 });
  for (let i = 1; i <= 400; i++) {
    h.add(msg(`m${i}`, i));
    if (i % 25 === 0) await h.flush();
  }
  await h.flush();
  assert.deepEqual(texts(h), Array.from({ length: 50 }, (_, i) => `m${i + 351}`));
  const onDisk = Deno.readTextFileSync(join(dir, "history.log")).split("\n").filter(Boolean).length;
  assert.ok(onDisk <= 2 * 50 + 64 + 25, `${onDisk} lines on disk for 50 kept`);
  const again = await HistoryStore.open(dir, ALICE, aliceKey, { perConversation: 50 });
  assert.deepEqual(texts(again), texts(h));
});

Deno.test("unread counts: received after the last read; marking read is kept", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey);
  h.add(msg("a", 1));
  h.add(msg("b", 2));
  h.add(msg("ours", 3, { dir: "out", from: ALICE, fromLabel: "you", state: "sent" }));
  assert.equal(h.conversations()[0].unread, 2);
  h.markRead(BOB);
  h.add(msg("c", 4));
  await h.flush();
  const again = await HistoryStore.open(dir, ALICE, aliceKey);
  const c = again.conversations()[0];
  assert.equal(c.unread, 1);
  assert.equal(c.count, 4);
  assert.equal(again.findByLabel("BOB"), BOB);
});

Deno.test("forget one conversation, then all: gone from memory and from disk", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey);
  h.add(msg("to bob", 1));
  h.add(msg("to all", 2, { conv: "public", convLabel: "all" }));
  assert.equal(await h.forget(BOB), 1);
  const again = await HistoryStore.open(dir, ALICE, aliceKey);
  assert.deepEqual(texts(again, BOB), []);
  assert.deepEqual(texts(again, "public"), ["to all"]);
  assert.equal(Deno.readTextFileSync(join(dir, "history.log")).split("\n").filter(Boolean).length, 1);

  const oldKey = Deno.readTextFileSync(join(dir, "key.json"));
  await again.forgetAll();
  assert.equal(again.conversations().length, 0);
  assert.notEqual(
    Deno.readTextFileSync(join(dir, "key.json")),
    oldKey,
    "a new key: an old copy cannot be read",
  );
  again.add(msg("new", 5));
  await again.flush();
  const third = await HistoryStore.open(dir, ALICE, aliceKey);
  assert.deepEqual(texts(third, "public"), []);
  assert.deepEqual(texts(third), ["new"]);
});

Deno.test("another identity cannot open the history, and does not overwrite it", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey);
  h.add(msg("mine", 1));
  await h.flush();
  const before = Deno.readTextFileSync(join(dir, "history.log"));
  await assert.rejects(HistoryStore.open(dir, ALICE, bobKey), /not a history key of this identity/);
  await assert.rejects(HistoryStore.open(dir, BOB, aliceKey), /not a history key of this identity/);
  assert.equal(Deno.readTextFileSync(join(dir, "history.log")), before);
  assert.deepEqual(texts(await HistoryStore.open(dir, ALICE, aliceKey)), ["mine"]);
});

Deno.test("the total bound drops the oldest messages whatever their conversation", async () => {
  const dir = tempDir();
  const h = await HistoryStore.open(dir, ALICE, aliceKey, { maxMessages: 30 });
  for (let i = 1; i <= 20; i++) h.add(msg(`b${i}`, i * 2)); // bob: even times
  for (let i = 1; i <= 20; i++) h.add(msg(`p${i}`, i * 2 + 1, { conv: "public", convLabel: "all" })); // odd
  assert.equal(texts(h).length + texts(h, "public").length, 30);
  assert.deepEqual(texts(h)[0], "b6", "the 5 oldest of each went first");
  assert.deepEqual(texts(h, "public")[0], "p6");
  await h.flush();
  const again = await HistoryStore.open(dir, ALICE, aliceKey, { maxMessages: 30 });
  assert.deepEqual(texts(again), texts(h));
});
