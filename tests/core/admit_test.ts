/** lib/core/admit.ts: the introducer's side of a join: SERVER_HELLO_JOIN and the welcome (PROFILE §12, §16). */
import assert from "node:assert/strict";
import { closes, errors, Harness, sent, SERVER } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const S2K = (await fixtureKey("user4")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const S3 = "5e3f0000-0000-4000-8000-00000000c0de";

function introducer(): Harness {
  const h = new Harness();
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  return h;
}

const join = (h: Harness, from: string) => ({
  type: "SERVER_HELLO_JOIN",
  from,
  to: "127.0.0.1:8765",
  ts: h.now,
  payload: { host: "127.0.0.1", port: 9000, pubkey: S2K },
});

Deno.test("a signed JOIN is welcomed with its own id, the servers we are linked to and our key", () => {
  const h = introducer();
  h.connect(10);
  const fx = h.signed(10, join(h, S2));
  const [welcome] = sent(fx, 10);
  assert.equal(welcome.type, "SERVER_WELCOME");
  const p = welcome.payload as { assigned_id: string; servers: { server_id: string }[] };
  assert.equal(p.assigned_id, S2);
  assert.deepEqual(p.servers.map((s) => s.server_id), [SERVER], "us (S2 is the joiner)");
  assert.equal(h.state.links.get(S2), 10);
  assert.equal(h.state.servers.get(S2)?.claimed, undefined, "a signed JOIN vouches for its own key");
});

Deno.test("an unsigned JOIN presenting a pinned server's key is refused (a stranger holding a public key)", () => {
  const h = introducer();
  h.state.servers.set(S3, { serverId: S3, host: "h", port: 1, pubkey: S2K });
  h.connect(10);
  const fx = h.frame(10, join(h, S2));
  assert.deepEqual(errors(fx), ["INVALID_SIG"]);
  assert.deepEqual(closes(fx), [{ conn: 10, code: 1008 }]);
  assert.equal(h.state.links.size, 0);
});

Deno.test("an unsigned JOIN for a new key is admitted, its pin only claimed and never dialed", () => {
  const h = introducer();
  h.connect(10);
  const fx = h.frame(10, join(h, S2));
  assert.equal(sent(fx, 10)[0].type, "SERVER_WELCOME");
  assert.equal(h.state.servers.get(S2)?.claimed, true);
  assert.ok(!fx.some((e) => e.kind === "persist" && e.op.op === "pinServer"), "not persisted");
});
