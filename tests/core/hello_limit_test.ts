import assert from "node:assert/strict";
import { config, errors, Harness, sent, T0 } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { DEFAULT_LIMITS } from "../../lib/core/types.ts";

const PUB = (await fixtureKey("user1")).publicKey;
const user = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;

Deno.test("USER_HELLO is rate-limited per address: the burst is admitted, the next hello refused with a clear ERROR", () => {
  const h = new Harness(config({ limits: { ...DEFAULT_LIMITS, helloPerSec: 10, helloBurst: 3 } }));
  for (let i = 1; i <= 4; i++) h.connect(i, "10.0.0.1");
  for (let i = 1; i <= 3; i++) {
    const fx = h.hello(i, user(i), PUB);
    assert.equal(sent(fx, i)[0]?.type, "ACK", `hello ${i} admitted`);
  }
  const refused = h.hello(4, user(4), PUB);
  assert.deepEqual(errors(refused), ["UNKNOWN_TYPE"]);
  const detail = sent(refused, 4)[0].payload as { detail: string };
  assert.match(detail.detail, /too many USER_HELLOs from your address .*wait a second/);
  assert.equal(h.state.localUsers.size, 3);
  assert.equal(h.state.conns.get(4)?.strikes, 1);
  // Another address has its own bucket.
  h.connect(5, "10.0.0.2");
  assert.equal(sent(h.hello(5, user(5), PUB), 5)[0]?.type, "ACK");
  // A token comes back after 1/10 s: the refused connection may try again.
  h.now = T0 + 100;
  assert.equal(sent(h.hello(4, user(4), PUB), 4)[0]?.type, "ACK");
  // Refilled buckets are forgotten, so the map does not grow with every address ever seen.
  h.now = T0 + 10_000;
  h.step({ kind: "tick", now: h.now });
  assert.equal(h.state.helloBuckets.size, 0);
});
