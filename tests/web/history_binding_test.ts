/**
 * The leader's writes to the history (lib/web/app/history_binding.ts) without a browser: a history whose saves
 * the test settles by hand. `written()` says whether what changed is on disk (the leader confirms a follower's
 * hand-over only then), settles when nothing will be written, and covers every earlier write; the writes commit
 * in the order made.
 */
import assert from "node:assert/strict";
import { type AppState, HistoryBinding, type HistoryStore } from "../../lib/web/app/history_binding.ts";
import type { ChatMessage, Conversation } from "../../lib/web/app/model.ts";

interface Save {
  ids: string[];
  ok(): void;
  fail(e: Error): void;
}

/** A history whose saves wait for the test; `saves` lists each save begun, in order. */
function store() {
  const saves: Save[] = [];
  const h: HistoryStore = {
    load: () => Promise.resolve({ messages: [], state: { unread: {} } as AppState }),
    save: (ms: ChatMessage[]) =>
      new Promise<void>((ok, fail) => saves.push({ ids: ms.map((m) => m.id), ok: () => ok(), fail })),
    keepFile: () => Promise.resolve({ kept: false, evicted: [] }),
    file: () => Promise.resolve(null),
    wipe: () => Promise.resolve(),
  };
  return { h, saves };
}

function binding(history: HistoryStore, leading = () => true) {
  const conversations = new Map<string, Conversation>();
  const notes: string[] = [];
  const b = new HistoryBinding(history, {
    leading,
    conversations,
    conv: (id) => conversations.get(id) ?? { id, messages: [], unread: 0 },
    touch: () => {},
    note: (_c, t) => notes.push(t),
  });
  return { b, notes };
}

const msg = (id: string): ChatMessage => ({
  id,
  conv: "public",
  dir: "out",
  from: "a",
  fromName: "alice",
  text: id,
  ts: 1,
  state: "sending",
});
const turn = () => new Promise((r) => setTimeout(r, 0));

/** What `p` settled to by now (undefined: not yet). */
async function settled<T>(p: Promise<T>): Promise<T | undefined> {
  let out: T | undefined;
  void p.then((v) => (out = v));
  await turn();
  return out;
}

Deno.test("history binding: written() is true once the write is on disk, false when it failed (and the user is told)", async () => {
  const { h, saves } = store();
  const { b, notes } = binding(h);
  b.changed(msg("e-1"));
  const first = b.written();
  b.flush();
  assert.equal(await settled(first), undefined);
  assert.deepEqual(saves[0].ids, ["e-1"]);
  saves[0].ok();
  assert.equal(await settled(first), true);
  b.changed(msg("e-2"));
  const second = b.written();
  b.flush();
  await turn(); // (the write begins once the one before is done)
  saves[1].fail(new Error("quota exceeded"));
  assert.equal(await settled(second), false);
  assert.match(notes[0], /Could not save the history in this browser: quota exceeded/);
});

Deno.test("history binding: written() settles (false) when nothing will be written: signed out, or not leading", async () => {
  const { h, saves } = store();
  const { b } = binding(h);
  b.changed(msg("e-1"));
  const waiting = b.written();
  b.stop();
  assert.equal(await settled(waiting), false);
  assert.equal(saves.length, 0);

  let leads = true;
  const other = binding(store().h, () => leads);
  other.b.changed(msg("e-2"));
  const w = other.b.written();
  leads = false; // another tab took the lead before the write
  other.b.flush();
  assert.equal(await settled(w), false);
  other.b.stop();
});

Deno.test("history binding: writes commit in the order made, and written() with nothing new covers every earlier write", async () => {
  const { h, saves } = store();
  const { b } = binding(h);
  const m = msg("e-1");
  b.changed(m);
  b.flush(); // a large write (the message "sending")
  m.state = "sent";
  b.changed(m);
  b.flush(); // a small later one ("sent"): it must not commit first
  await turn();
  assert.equal(saves.length, 1, "the later write waits for the earlier");
  const all = b.written();
  saves[0].ok();
  await turn();
  assert.equal(saves.length, 2);
  assert.equal(await settled(all), undefined, "the later write is not on disk yet");
  saves[1].ok();
  assert.equal(await settled(all), true);
  // A failed write does not stop the ones after it.
  b.changed(msg("e-2"));
  b.flush();
  b.changed(msg("e-3"));
  const later = b.written();
  b.flush();
  await turn();
  saves[2].fail(new Error("refused"));
  await turn();
  assert.deepEqual(saves[3].ids, ["e-3"]);
  saves[3].ok();
  assert.equal(await settled(later), true);
});
