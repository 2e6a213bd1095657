/**
 * A follower tab's hand-overs to the leader tab (lib/web/app/handover_queue.ts), without a browser, on fake time: kept
 * until confirmed, handed again at deadlines that back off and stop, at once to a new leader, taken over whole
 * when the follower leads, and bounded in count and bytes. The browser test (tests/web/history_test.ts, "web
 * tabs: a message handed to a leader tab that closes ...") drives the same logic across real tabs.
 */
import assert from "node:assert/strict";
import { HANDOVER_LIMITS, HandoverQueue } from "../../lib/web/app/handover_queue.ts";

const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

/** Run the queue's deadlines as the session's one timer would: jump to each, hand what is due. */
function runDeadlines(
  q: HandoverQueue<string>,
  from: number,
  until: number,
): { at: number; ids: string[] }[] {
  const out: { at: number; ids: string[] }[] = [];
  let now = from;
  for (let at = q.next(); at !== undefined && at <= until; at = q.next()) {
    assert.ok(at >= now, "a deadline is never in the past of the last one");
    now = at;
    // Nothing is due a moment before the deadline.
    assert.deepEqual(q.due(at - 1), []);
    out.push({ at, ids: ids(q.due(at)) });
  }
  return out;
}

Deno.test("handover: a hand-over nobody confirms is handed again at backed-off deadlines, then no timer", () => {
  const q = new HandoverQueue<string>();
  assert.ok(q.keep("e-1", "hi", 2, 1_000));
  const again = runDeadlines(q, 1_000, 10_000_000);
  assert.deepEqual(again.map((a) => a.at - 1_000), [2_000, 6_000, 14_000, 30_000, 60_000, 90_000]);
  assert.equal(again.length, HANDOVER_LIMITS.maxTries - 1);
  for (const a of again) assert.deepEqual(a.ids, ["e-1"]);
  // It stays kept (never dropped), but no deadline is left: a leader that never answers costs no timer.
  assert.equal(q.next(), undefined);
  assert.equal(q.size, 1);
  assert.deepEqual(q.items(), [{ id: "e-1", item: "hi" }]);
});

Deno.test("handover: a confirmation forgets it and its deadline; a late or unknown one changes nothing", () => {
  const q = new HandoverQueue<string>();
  q.keep("e-1", "one", 3, 0);
  q.keep("e-2", "two", 3, 500);
  assert.equal(q.next(), 2_000);
  assert.equal(q.confirm("e-1"), true);
  assert.equal(q.next(), 2_500);
  assert.equal(q.confirm("e-1"), false);
  assert.equal(q.confirm("e-9"), false);
  assert.deepEqual(ids(q.due(2_500)), ["e-2"]);
  assert.equal(q.confirm("e-2"), true);
  assert.equal(q.next(), undefined);
  assert.equal(q.size, 0);
});

Deno.test("handover: the same id kept twice is one hand-over", () => {
  const q = new HandoverQueue<string>();
  assert.ok(q.keep("e-1", "hi", 2, 0));
  assert.ok(q.keep("e-1", "hi", 2, 100));
  assert.equal(q.size, 1);
  assert.deepEqual(ids(q.due(2_000)), ["e-1"]);
});

Deno.test("handover: a new leader gets everything kept at once, in the order written, deadlines anew", () => {
  const q = new HandoverQueue<string>();
  q.keep("e-1", "one", 3, 0);
  q.keep("e-2", "two", 3, 10);
  runDeadlines(q, 0, 10_000_000); // the old leader never answered: no deadline left
  assert.equal(q.next(), undefined);
  assert.deepEqual(ids(q.newLeader(20_000_000)), ["e-1", "e-2"]);
  assert.equal(q.next(), 20_002_000);
  assert.deepEqual(runDeadlines(q, 20_000_000, 20_002_000), [{ at: 20_002_000, ids: ["e-1", "e-2"] }]);
});

Deno.test("handover: the follower that leads takes everything kept, and the queue is empty", () => {
  const q = new HandoverQueue<string>();
  q.keep("e-1", "one", 3, 0);
  q.keep("o-2", "file", 300, 1);
  assert.deepEqual(q.takeAll(), [{ id: "e-1", item: "one" }, { id: "o-2", item: "file" }]);
  assert.equal(q.size, 0);
  assert.equal(q.next(), undefined);
  assert.deepEqual(q.due(1_000_000), []);
  // The bytes are free again.
  const small = new HandoverQueue<string>({ ...HANDOVER_LIMITS, maxBytes: 10 });
  assert.ok(small.keep("a", "x", 10, 0));
  small.takeAll();
  assert.ok(small.keep("b", "y", 10, 0));
});

Deno.test("handover: bounded in count and bytes; a confirmation makes room", () => {
  const q = new HandoverQueue<string>({ ...HANDOVER_LIMITS, maxItems: 3, maxBytes: 100 });
  assert.ok(q.keep("a", "a", 10, 0));
  assert.ok(q.keep("b", "b", 10, 0));
  assert.ok(q.keep("c", "c", 10, 0));
  assert.equal(q.keep("d", "d", 10, 0), false, "the fourth is refused (the caller says so)");
  assert.equal(q.size, 3);
  q.confirm("a");
  assert.ok(q.keep("d", "d", 10, 0));
  const bytes = new HandoverQueue<string>({ ...HANDOVER_LIMITS, maxBytes: 100 });
  assert.ok(bytes.keep("a", "a", 60, 0));
  assert.equal(bytes.keep("b", "b", 41, 0), false);
  assert.ok(bytes.keep("c", "c", 40, 0));
  assert.equal(bytes.size, 2);
  // The default bounds: 100 items.
  const d = new HandoverQueue<string>();
  for (let i = 0; i < HANDOVER_LIMITS.maxItems; i++) assert.ok(d.keep(`e-${i}`, "x", 1, 0));
  assert.equal(d.keep("one more", "x", 1, 0), false);
});
