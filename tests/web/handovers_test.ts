/**
 * The session's hand-overs between tabs (lib/web/app/handovers.ts) without a browser: the real conversations,
 * a history write the test settles by hand, and the channel between tabs as a list of what was posted. The
 * leader takes an id once and confirms it only after the history write; the follower shows what it keeps and
 * forgets it on the confirmation (its deadline timer with it: the sanitizers see a timer left behind).
 */
import assert from "node:assert/strict";
import { Conversations, type SavedHistory } from "../../lib/web/app/conversations.ts";
import { Handovers, type Timers } from "../../lib/web/app/handovers.ts";
import type { ChatMessage } from "../../lib/web/app/model.ts";
import {
  applyToLeader,
  type FromLeader,
  type Handed,
  type Leader,
  MAX_TEXT_CHARS,
  type TabChannel,
  type ToLeader,
} from "../../lib/web/app/tab_messages.ts";

const TOM = "70a00000-0000-4000-8000-0000000000b6";

/** Fake time and timers: the test moves the clock and fires what is due. */
class FakeTimers implements Timers {
  at = 0;
  private seq = 0;
  readonly live = new Map<number, { due: number; f: () => void }>();
  now = () => this.at;
  set = (f: () => void, ms: number) => {
    this.live.set(++this.seq, { due: this.at + ms, f });
    return this.seq;
  };
  clear = (id: unknown) => void this.live.delete(id as number);
  /** Move to the next timer's moment and fire it (false: none armed). */
  fireNext(): boolean {
    const next = [...this.live.entries()].sort((a, b) => a[1].due - b[1].due)[0];
    if (!next) return false;
    this.live.delete(next[0]);
    this.at = next[1].due;
    next[1].f();
    return true;
  }
}

function tab(role: "leader" | "follower", connected = true) {
  const timers = new FakeTimers();
  const posted: (FromLeader | ToLeader)[] = [];
  const stored: string[] = [];
  const carried: string[] = [];
  // The history write as the binding makes it: changes gather into the next write, settled by the test.
  let settle: ((ok: boolean) => void) | undefined;
  let write = Promise.resolve(true);
  const saved = {
    changed: (m: ChatMessage) => {
      stored.push(m.id);
      if (!settle) write = new Promise<boolean>((r) => (settle = r));
    },
    stateChanged: () => {},
    dropped: () => {},
  } as unknown as SavedHistory;
  const model = new Conversations({
    me: { userId: "a11ce000-0000-4000-8000-0000000000a5", displayName: "alice" },
    saved: () => saved,
    post: (m) => posted.push(m),
    showing: () => false,
    incoming: () => {},
    progress: () => {},
    changed: () => {},
  });
  const h = new Handovers({
    role: () => role,
    post: (m) => posted.push(m),
    model,
    written: () => write,
    carryOut: (m) => carried.push(m.id),
    online: () => connected,
    timers,
  });
  const done = (ok = true) => {
    settle?.(ok);
    settle = undefined;
  };
  return { h, model, posted, stored, carried, timers, settle: done };
}

const text = (id: string, t = "hi tom"): Handed => ({ kind: "text", id, ts: 1_000, to: TOM, text: t });
const took = (posted: (FromLeader | ToLeader)[]) => posted.filter((p) => p.t === "took").map((p) => p.id);
const turn = () => new Promise((r) => setTimeout(r, 0));

Deno.test("handovers: the leader confirms only after the history write, then sends; an id is taken once", async () => {
  const l = tab("leader");
  l.h.take(text("e-1"));
  // Added (stored, told to the tabs) at once, under the follower's id and time; not confirmed, not sent yet.
  const m = l.model.find(TOM, "e-1")!;
  assert.equal(m.ts, 1_000);
  assert.equal(m.state, "sending");
  assert.deepEqual(l.stored, ["e-1"]);
  await turn();
  assert.deepEqual(took(l.posted), []);
  assert.deepEqual(l.carried, []);
  // The same hand-over again (the follower's deadline passed): nothing new.
  l.h.take(text("e-1"));
  l.settle();
  await turn();
  assert.deepEqual(took(l.posted), ["e-1", "e-1"]);
  assert.deepEqual(l.carried, ["e-1"]);
  assert.equal(l.model.conv(TOM).messages.length, 1);
  // Later again (a new leader that mirrored it as sent): confirmed, not sent again.
  m.state = "sent";
  l.h.take(text("e-1"));
  await turn();
  assert.deepEqual(l.carried, ["e-1"]);
  assert.deepEqual(took(l.posted), ["e-1", "e-1", "e-1"]);
});

Deno.test("handovers: a follower shows what it hands, keeps it until `took`, and hands it to a new leader", () => {
  const f = tab("follower");
  f.h.send(text("e-1", "typed here"));
  assert.deepEqual(f.posted.map((p) => p.t), ["send"]);
  const shown = f.model.find(TOM, "e-1")!;
  assert.equal(shown.text, "typed here");
  assert.equal(shown.state, "sending");
  assert.deepEqual(f.stored, [], "a follower stores nothing");
  // A snapshot from the leader that does not know it yet: it stays on screen.
  f.h.fromLeader({ t: "wiped" }, () => f.model.all.clear());
  assert.ok(f.model.find(TOM, "e-1"));
  // A new leader: handed to it at once.
  f.h.fromLeader({ t: "lead", tab: "t2", v: 2 }, () => {});
  assert.deepEqual(f.posted.map((p) => p.t), ["send", "send"]);
  // The leader's copy still "sending" is no confirmation; `took` is.
  f.h.fromLeader({ t: "msg", m: { ...shown } }, () => {});
  f.h.fromLeader({ t: "lead", tab: "t3", v: 2 }, () => {});
  assert.equal(f.posted.length, 3);
  // Confirmed: forgotten, and no timer is left armed.
  assert.equal(f.timers.live.size, 1);
  f.h.fromLeader({ t: "took", id: "e-1" }, () => {});
  assert.equal(f.timers.live.size, 0);
});

Deno.test("handovers: a leader that never answers gets it again at each deadline, then no timer is armed", () => {
  const f = tab("follower");
  f.h.send(text("e-1"));
  const times: number[] = [];
  while (f.timers.fireNext()) times.push(f.timers.at);
  assert.deepEqual(times, [2_000, 6_000, 14_000, 30_000, 60_000, 90_000]);
  assert.equal(f.posted.filter((p) => p.t === "send").length, 7, "the first hand-over and six again");
  assert.ok(
    f.posted.every((p) => "h" in p && p.h.id === "e-1" && p.h.ts === 1_000),
    "the same id and time",
  );
  assert.equal(f.timers.live.size, 0);
  // Still kept: the next leader gets it.
  f.h.fromLeader({ t: "lead", tab: "t2", v: 2 }, () => {});
  assert.equal(f.posted.length, 8);
  assert.equal(f.timers.live.size, 1);
  f.h.lead();
  assert.equal(f.timers.live.size, 0, "a tab that leads hands nothing again");
});

Deno.test("handovers: the leader's copy beyond sending confirms it too; a follower that leads carries out the rest", () => {
  const f = tab("follower");
  f.h.send(text("e-1", "one"));
  f.h.send(text("e-2", "two"));
  const one = f.model.find(TOM, "e-1")!;
  const mirror = (d: FromLeader) => {
    if (d.t !== "msg") return;
    const list = f.model.conv(d.m.conv).messages;
    list.splice(list.findIndex((x) => x.id === d.m.id), 1, d.m);
  };
  f.h.fromLeader({ t: "msg", m: { ...one, state: "sent" } }, mirror);
  // A third tab leads: only e-2 is handed to it.
  f.h.fromLeader({ t: "lead", tab: "t2", v: 2 }, mirror);
  const sent = f.posted.flatMap((p) => ("h" in p ? [p.h.id] : []));
  assert.deepEqual(sent, ["e-1", "e-2", "e-2"]);
  // This tab leads now: what still waits (e-2) goes to its client core, once; e-1 does not.
  f.h.lead();
  assert.deepEqual(f.carried, ["e-2"]);
  assert.equal(f.timers.live.size, 0);
});

Deno.test("handovers: a full follower says so at once and keeps nothing", () => {
  const f = tab("follower");
  for (let i = 0; i < 100; i++) f.h.send(text(`e-${i}`));
  f.h.send(text("e-full", "one too many"));
  const m = f.model.find(TOM, "e-full")!;
  assert.equal(m.state, "failed");
  assert.match(m.detail!, /too much waits/);
  assert.equal(f.posted.length, 100);
  f.h.lead(); // clears the deadline timer
});

Deno.test("handovers: a file taken while the leader is not connected waits for the connection, then goes once", async () => {
  const l = tab("leader", false);
  const file = new File(["kept bytes"], "a.txt");
  l.h.take({ kind: "file", id: "o-1", ts: 1_000, to: TOM, file });
  const m = l.model.find(TOM, "o-1")!;
  assert.equal(m.file?.name, "a.txt");
  assert.equal(m.file?.phase, "sending");
  l.settle();
  await turn();
  assert.deepEqual(took(l.posted), [], "not confirmed: only its description is in the history");
  assert.deepEqual(l.carried, [], "not sent while offline");
  l.h.online();
  l.h.online();
  assert.deepEqual(l.carried, ["o-1"]);
});

Deno.test("handovers: the leader takes a well-formed hand-over, one from a tab on the older app under a fresh id, and drops the rest", () => {
  const now = 1_800_000_000_000;
  const taken: Handed[] = [];
  const s = { take: (h: Handed) => taken.push(h) } as unknown as Leader;
  const give = (d: unknown) => applyToLeader(s, {} as TabChannel, d as ToLeader, now);
  const id = "e-0f0e0d0c-0b0a-4000-8000-000000000001";
  give({ t: "send", h: { ...text(id), ts: now - 5_000 } });
  give({ t: "send", to: TOM, text: "from an older tab" });
  give({ t: "file", to: TOM, file: new File(["x"], "old.txt") });
  give({ t: "send", h: { kind: "text", id: 7, ts: now, to: TOM, text: "bad id" } });
  give({ t: "send", h: { kind: "file", id: "o-1", ts: now, to: TOM, file: "not a file" } });
  give({ t: "send", to: 5, text: "bad target" });
  assert.deepEqual(taken.map((h) => h.kind), ["text", "text", "file"]);
  assert.equal(taken[0].id, id);
  assert.match(taken[1].id, /^e-[0-9a-f-]{36}$/);
  assert.match(taken[2].id, /^o-[0-9a-f-]{36}$/);
});

Deno.test("handovers: a malformed or unbounded hand-over is dropped, never thrown on, whatever its form", () => {
  const now = 1_800_000_000_000;
  const l = tab("leader");
  const taken: string[] = [];
  // The real take: a hand-over that got through would be added to the conversations (and a Blob would throw).
  const s = { take: (h: Handed) => (l.h.take(h), taken.push(h.id)) } as unknown as Leader;
  const give = (d: unknown) => applyToLeader(s, {} as TabChannel, d as ToLeader, now);
  const eid = "e-0f0e0d0c-0b0a-4000-8000-000000000002";
  const oid = "o-0f0e0d0c-0b0a-4000-8000-000000000003";
  const ok = { kind: "text", id: eid, ts: now, to: TOM, text: "fine" };
  const okFile = { kind: "file", id: oid, ts: now, to: TOM, file: new File(["x"], "a.txt") };
  const bad: unknown[] = [
    { ...okFile, file: new Blob(["not a File"]) },
    { ...ok, text: "x".repeat(50 * 1024 * 1024) },
    { ...ok, text: "x".repeat(MAX_TEXT_CHARS + 1) },
    { ...ok, text: "" },
    { ...ok, id: `e-1"] , x[y="` },
    { ...ok, id: "e-" + "a".repeat(36) },
    { ...ok, id: oid }, // a file's id on a text
    { ...okFile, id: eid },
    { ...ok, to: "not a user id" },
    { ...ok, to: `${TOM}"` },
    { ...ok, ts: 1e300 },
    { ...ok, ts: now + 25 * 3_600_000 },
    { ...ok, ts: now - 25 * 3_600_000 },
    { ...ok, ts: Number.NaN },
    { ...ok, kind: "voice" },
    null,
    "text",
  ];
  for (const h of bad) assert.doesNotThrow(() => give({ t: "send", h }));
  give({ t: "send", to: TOM, text: "x".repeat(MAX_TEXT_CHARS + 1) }); // the older form, too long
  give({ t: "send", to: "nobody", text: "hi" });
  give({ t: "file", to: TOM, file: new Blob(["not a File"]) });
  assert.deepEqual(taken, [], "nothing malformed was taken");
  assert.equal(l.model.conv(TOM).messages.length, 0);
  // The well-formed ones (at the limits) are taken.
  give({ t: "send", h: { ...ok, text: "x".repeat(MAX_TEXT_CHARS), ts: now - 23 * 3_600_000 } });
  give({ t: "send", h: { ...okFile, to: "public" } });
  assert.deepEqual(taken, [eid, oid]);
});

Deno.test("handovers: a file the leader took offline and never sent stays with the follower, which hands it to the next leader", async () => {
  const f = tab("follower");
  const l = tab("leader", false);
  const next = tab("leader", false);
  const file = new File(["the bytes"], "b.txt");
  const oid = "o-0f0e0d0c-0b0a-4000-8000-000000000004";
  /** What a leader posted, as the follower hears it (the session's mirror: the leader's copy replaces ours). */
  const hear = (from: (FromLeader | ToLeader)[]) => {
    for (const d of from.splice(0)) {
      if (!("m" in d) && d.t !== "took" && d.t !== "lead") continue;
      f.h.fromLeader(d as FromLeader, (d) => {
        if (d.t !== "msg") return;
        const list = f.model.conv(d.m.conv).messages;
        const i = list.findIndex((x) => x.id === d.m.id);
        list.splice(i < 0 ? list.length : i, i < 0 ? 0 : 1, structuredClone(d.m));
      });
    }
  };
  f.h.send({ kind: "file", id: oid, ts: 1_000, to: TOM, file });
  const handed = f.posted.splice(0);
  assert.deepEqual(handed.map((p) => p.t), ["send"]);
  // The leader takes it (offline: it waits for the connection), writes it, and tells the tabs.
  for (const d of handed) if ("h" in d) l.h.take(d.h);
  l.settle();
  await turn();
  assert.equal(l.model.find(TOM, oid)?.file?.phase, "sending");
  hear(l.posted);
  // The leader closes (offline, the file never went). The next leader announces itself: the follower still
  // keeps the file and hands it, bytes and all, under the same id.
  hear([{ t: "lead", tab: "t3", v: 2 }]);
  const again = f.posted.filter((p) => p.t === "send");
  assert.equal(again.length, 1);
  assert.ok(
    "h" in again[0] && again[0].h.id === oid && again[0].h.kind === "file" && again[0].h.file === file,
  );
  // The next leader (which mirrored the old one's copy) takes it and sends it once connected.
  next.model.add(structuredClone(l.model.find(TOM, oid)!));
  next.h.take("h" in again[0] ? again[0].h : text("x"));
  next.settle();
  await turn();
  next.h.online();
  assert.deepEqual(next.carried, [oid]);
  // Its copy beyond "sending" (relayed whole) confirms it: the follower forgets it, and no timer is left.
  const m = next.model.find(TOM, oid)!;
  m.file = { ...m.file!, fileId: "f1", phase: "sending" };
  hear([{ t: "msg", m: structuredClone(m) }]);
  assert.equal(f.timers.live.size, 1, "uploading (its fileId known) is not beyond sending");
  m.file = { ...m.file!, phase: "complete" };
  hear([{ t: "msg", m: structuredClone(m) }]);
  assert.equal(f.timers.live.size, 0);
  hear([{ t: "lead", tab: "t4", v: 2 }]);
  assert.equal(f.posted.filter((p) => p.t === "send").length, 1, "forgotten: nothing handed to t4");
});

Deno.test("handovers: a history write that failed sends the text but does not confirm it; handed again, it is confirmed after a write that holds it", async () => {
  const l = tab("leader");
  l.h.take(text("e-1"));
  l.settle(false);
  await turn();
  assert.deepEqual(took(l.posted), [], "not on disk: no took");
  assert.deepEqual(l.carried, ["e-1"], "sent all the same");
  // The follower hands it again: stored again, and confirmed once that write is on disk; not sent again.
  l.h.take(text("e-1"));
  assert.deepEqual(l.stored, ["e-1", "e-1"]);
  await turn();
  assert.deepEqual(took(l.posted), []);
  l.settle();
  await turn();
  assert.deepEqual(took(l.posted), ["e-1"]);
  assert.deepEqual(l.carried, ["e-1"]);
});

Deno.test("handovers: a leader on the older app (no version announced) gets each hand-over once, in its form, and nothing is kept", () => {
  const f = tab("follower");
  const snap = (v?: number) =>
    ({ t: "snap", convs: [], status: { kind: "online" }, v }) as unknown as FromLeader;
  // Kept while the leader was a current one; then the leader's snapshot says no version.
  f.h.fromLeader(snap(2), () => {});
  f.h.send(text("e-1", "kept"));
  assert.equal(f.timers.live.size, 1);
  f.h.fromLeader(snap(), () => f.model.all.clear());
  assert.deepEqual(
    f.posted.slice(1),
    [{ t: "send", to: TOM, text: "kept" }],
    "what was kept, once, in the old form",
  );
  assert.equal(f.timers.live.size, 0, "not handed again");
  assert.equal(f.model.find(TOM, "e-1"), undefined, "the older leader shows its own copy");
  // New ones: once, in the old form (text and file), not shown here, not kept.
  const file = new File(["x"], "c.txt");
  f.h.send(text("e-2", "new"));
  f.h.send({ kind: "file", id: "o-2", ts: 1_000, to: TOM, file });
  assert.deepEqual(f.posted.slice(2), [{ t: "send", to: TOM, text: "new" }, { t: "file", to: TOM, file }]);
  assert.equal(f.timers.live.size, 0);
  assert.equal(f.model.find(TOM, "e-2"), undefined);
  // A current leader announces itself: nothing of the older ones is handed to it; new ones are kept again.
  f.h.fromLeader({ t: "lead", tab: "t2", v: 2 }, () => {});
  assert.equal(f.posted.length, 4);
  f.h.send(text("e-3"));
  assert.ok("h" in f.posted[4] && f.posted[4].h.id === "e-3");
  assert.equal(f.timers.live.size, 1);
  f.h.lead();
});
