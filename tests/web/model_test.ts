/**
 * The web app's model helpers (lib/web/app/model.ts) that need no browser: the offline countdown's text and when
 * it next changes (the banner arms one timer for that moment, and none once it says "now").
 */
import assert from "node:assert/strict";
import { insertSorted, nextChangeIn, retryText } from "../../lib/web/app/model.ts";

Deno.test("countdown: the text changes exactly when the timer armed for it fires, and then no timer is armed", () => {
  const retryAt = 1_000_000;
  let now = retryAt - 8_500;
  const texts: string[] = [];
  const waits: number[] = [];
  for (let i = 0; i < 20; i++) {
    texts.push(retryText(retryAt, now));
    const ms = nextChangeIn(retryAt, now);
    if (ms === null) break;
    waits.push(ms);
    // Just before the timer would fire the text is still the same; when it fires it is the next one.
    assert.equal(retryText(retryAt, now + ms - 1), texts.at(-1));
    now += ms;
  }
  assert.deepEqual(texts, [
    " Trying again in 9 s.",
    " Trying again in 8 s.",
    " Trying again in 7 s.",
    " Trying again in 6 s.",
    " Trying again in 5 s.",
    " Trying again in 4 s.",
    " Trying again in 3 s.",
    " Trying again in 2 s.",
    " Trying again in 1 s.",
    " Trying again now…",
  ]);
  assert.deepEqual(waits, [500, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]);
});

Deno.test("countdown: no retry scheduled, or its time passed: no text to update and no timer", () => {
  assert.equal(retryText(0, 5_000), "");
  assert.equal(nextChangeIn(0, 5_000), null);
  assert.equal(nextChangeIn(5_000, 5_000), null);
  assert.equal(nextChangeIn(5_000, 9_000), null);
  assert.equal(retryText(5_000, 9_000), " Trying again now…");
  // 2001 ms left shows "3 s": it changes in 1 ms; a wait is never zero.
  assert.equal(retryText(10_000, 7_999), " Trying again in 3 s.");
  assert.equal(nextChangeIn(10_000, 7_999), 1);
  assert.equal(nextChangeIn(10_000, 8_000), 1000);
});

Deno.test("insertSorted keeps send order, a message after those with the same time", () => {
  const m = (id: string, ts: number) => ({
    id,
    conv: "c",
    dir: "in" as const,
    from: "",
    fromName: "",
    text: id,
    ts,
  });
  const list = [m("a", 1), m("b", 3)];
  insertSorted(list, m("c", 2));
  insertSorted(list, m("d", 3));
  insertSorted(list, m("e", 0));
  assert.deepEqual(list.map((x) => x.id), ["e", "a", "c", "b", "d"]);
});
