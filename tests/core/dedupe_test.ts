/** lib/core/dedupe.ts: the seen cache (SOCP §7.2, PROFILE §11, §16), with time passed in. */
import assert from "node:assert/strict";
import { SeenCache } from "../../lib/core/dedupe.ts";

Deno.test("a key is a duplicate until its TTL runs out, then new again", () => {
  const c = new SeenCache(1000, 10);
  assert.equal(c.add("k", 0), true);
  assert.equal(c.add("k", 999), false, "within the TTL");
  assert.equal(c.has("k", 999), true);
  assert.equal(c.has("k", 1000), false, "expired at its TTL");
  assert.equal(c.add("k", 1000), true, "new again");
  assert.equal(c.has("k", 1999), true, "with a fresh TTL");
});

Deno.test("a longer expiry is kept (payload keys live as long as a copy could pass freshness); never shorter than the TTL", () => {
  const c = new SeenCache(1000, 10);
  c.add("long", 0, 5000);
  c.add("short", 0, 10);
  assert.equal(c.has("long", 4999), true);
  assert.equal(c.has("short", 999), true, "at least the TTL");
  assert.equal(c.has("short", 1000), false);
});

Deno.test("bounded: past `max` keys the oldest goes first", () => {
  const c = new SeenCache(60_000, 3);
  for (const k of ["a", "b", "c", "d"]) c.add(k, 0);
  assert.equal(c.size, 3);
  assert.equal(c.has("a", 1), false, "the oldest was evicted");
  assert.equal(c.has("d", 1), true);
});

Deno.test("expire drops expired keys from the front and nextExpiry names the next one to go", () => {
  const c = new SeenCache(100, 10);
  assert.equal(c.nextExpiry(), Infinity, "empty: nothing to expire");
  c.add("a", 0);
  c.add("b", 50);
  assert.equal(c.nextExpiry(), 100);
  c.expire(99);
  assert.equal(c.size, 2, "not yet");
  c.expire(100);
  assert.equal(c.size, 1);
  assert.equal(c.nextExpiry(), 150);
});

Deno.test("restored entries keep their expiry across a restart; the two key forms differ", () => {
  const c = SeenCache.restored(1000, 10, [["k", 5000]]);
  assert.equal(c.has("k", 4999), true);
  assert.equal(c.has("k", 5000), false);
  assert.notEqual(SeenCache.key(1, "a", "b", "d"), SeenCache.payloadKey("MSG_DIRECT", "a", "d"));
  assert.equal(
    SeenCache.payloadKey("MSG_DIRECT", "", "d"),
    SeenCache.payloadKey("MSG_DIRECT", "", "d"),
    "a payload key ignores the envelope: a copy with another ts is the same frame",
  );
});
