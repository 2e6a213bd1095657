/** lib/core/limits.ts: token buckets per connection and per address, the freshness window. */
import assert from "node:assert/strict";
import {
  bucket,
  forgetFullHelloBuckets,
  SERVER_LINK_SCALE,
  staleness,
  takeHelloToken,
  takeJoinToken,
  takeToken,
} from "../../lib/core/limits.ts";
import { initState } from "../../lib/core/reduce.ts";
import { type Conn, DEFAULT_LIMITS, type Limits } from "../../lib/core/types.ts";
import { config } from "../helpers/reducer.ts";

function conn(role: Conn["role"], limits: Limits, now = 0): Conn {
  return {
    id: 1,
    addr: "a",
    openedAt: now,
    role,
    strikes: 0,
    tokens: bucket({ role } as Conn, limits).burst,
    refilledAt: now,
    throttled: false,
    pemDialect: false,
    lastSeen: now,
    lastSent: now,
  };
}

Deno.test("a connection's bucket: burst, then ratePerSec a second; a server link's is scaled up", () => {
  const limits: Limits = { ...DEFAULT_LIMITS, ratePerSec: 10, rateBurst: 3 };
  const c = conn("user", limits);
  for (let i = 0; i < 3; i++) assert.equal(takeToken(c, limits, 0), true);
  assert.equal(takeToken(c, limits, 0), false, "burst spent");
  assert.equal(takeToken(c, limits, 99), false, "not yet a token back");
  assert.equal(takeToken(c, limits, 100), true, "one token after 100 ms at 10/s");
  assert.deepEqual(bucket(conn("server", limits), limits), {
    ratePerSec: 10 * SERVER_LINK_SCALE,
    burst: 3 * SERVER_LINK_SCALE,
  });
});

Deno.test("a late, older timestamp mints no tokens", () => {
  const limits: Limits = { ...DEFAULT_LIMITS, ratePerSec: 10, rateBurst: 1 };
  const c = conn("user", limits, 1000);
  assert.equal(takeToken(c, limits, 1000), true);
  assert.equal(takeToken(c, limits, 0), false, "time going backwards refills nothing");
  assert.equal(takeToken(c, limits, 1050), false, "and does not move the refill time back");
});

Deno.test("hello and JOIN buckets are per address; full ones are forgotten", () => {
  const s = initState(config({ limits: { ...DEFAULT_LIMITS, helloPerSec: 1, helloBurst: 2 } }));
  assert.equal(takeHelloToken(s, "a", 0), true);
  assert.equal(takeHelloToken(s, "a", 0), true);
  assert.equal(takeHelloToken(s, "a", 0), false, "address a spent its burst");
  assert.equal(takeHelloToken(s, "b", 0), true, "address b has its own");
  assert.equal(takeJoinToken(s, "a", 0), true, "JOINs have their own bucket");
  forgetFullHelloBuckets(s, 999);
  assert.equal(s.helloBuckets.size, 2, "not full yet");
  forgetFullHelloBuckets(s, 2000);
  assert.equal(s.helloBuckets.size, 0, "full again: forgotten");
  assert.equal(s.joinBuckets.size, 1, "a JOIN token takes 10 s to come back");
});

Deno.test("staleness: within freshnessMs either way is fresh; beyond, the reason names the skew", () => {
  const limits: Limits = { ...DEFAULT_LIMITS, freshnessMs: 60_000 };
  assert.equal(staleness(0, 60_000, limits), null);
  assert.equal(staleness(120_000, 60_000, limits), null, "a minute ahead");
  assert.match(staleness(0, 61_000, limits) ?? "", /61 s from the server clock \(limit 60 s\)/);
  assert.notEqual(staleness(200_000, 0, limits), null, "in the future too");
});
