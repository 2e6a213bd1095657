/** lib/core/state.ts: the initial state from what the store loaded; the sweep schedule. */
import assert from "node:assert/strict";
import { initState } from "../../lib/core/reduce.ts";
import { setPresenceTs, sweepBy } from "../../lib/core/state.ts";
import { DEFAULT_LIMITS } from "../../lib/core/types.ts";
import { ALICE, BOB, config, T0 } from "../helpers/reducer.ts";

const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";

Deno.test("initState takes what the store holds: users, servers, queues, channel, pins, seen keys", () => {
  const s = initState(config(), {
    users: [{ userId: ALICE, pubkey: "K", encPubkey: "K", meta: null, version: 2 }],
    servers: [{ serverId: S2, host: "h", port: 1, pubkey: "KS" }],
    homes: [[BOB, S2]],
    queued: [[ALICE, 3]],
    outbox: [[S2, 4]],
    channel: { version: 7, creatorPub: "CH", members: [ALICE] },
    acceptedRefs: [["ref", T0]],
    pins: [[BOB, "KB"]],
    seen: [["key", T0 + 1000]],
  });
  assert.equal(s.users.get(ALICE)?.version, 2);
  assert.equal(s.servers.get(S2)?.pubkey, "KS");
  assert.equal(s.homes.get(BOB), S2);
  assert.equal(s.queued.get(ALICE), 3);
  assert.equal(s.outbox.get(S2), 4);
  assert.deepEqual([...s.channel!.members], [ALICE]);
  assert.equal(s.channel!.version, 7);
  assert.equal(s.acceptedRefs.get("ref"), T0);
  assert.equal(s.pins.get(BOB), "KB");
  assert.equal(s.seen.has("key", T0 + 999), true, "a seen key survives the restart until its expiry");
  assert.equal(s.conns.size, 0);
  assert.equal(s.sweepAt, Infinity, "nothing to sweep yet");
});

Deno.test("the sweep schedule only moves earlier; a presence time schedules its own sweep a TTL later", () => {
  const s = initState(config());
  sweepBy(s, 500);
  sweepBy(s, 900);
  assert.equal(s.sweepAt, 500);
  const t = initState(config());
  setPresenceTs(t, ALICE, T0);
  assert.equal(t.presenceTs.get(ALICE), T0);
  assert.equal(t.sweepAt, T0 + DEFAULT_LIMITS.seenTtlMs + 1);
});
