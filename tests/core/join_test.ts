/** lib/core/join.ts: the joiner's side: the bootstrap list, the welcome, starting alone (PROFILE §8, §12, §15, §16). */
import assert from "node:assert/strict";
import { closes, dials, errors, Harness, joining, SERVER } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const S2K = (await fixtureKey("user4")).publicKey;
const S3K = (await fixtureKey("user5")).publicKey;
const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";

function dialing() {
  const h = new Harness(joining([{ host: "intro", port: 1, pubkey: S2K }]));
  const [d] = dials(h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 }));
  h.step({ kind: "connected", conn: 20, addr: "intro", now: h.now, dial: d.token });
  return h;
}

Deno.test("a node without a bootstrap list starts alone and asks the shell for the channel key", () => {
  const h = new Harness();
  const fx = h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  assert.equal(h.state.join.phase, "alone");
  assert.ok(fx.some((e) => e.kind === "createChannel"));
  assert.equal(h.state.channelPending, true);
  const again = h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  assert.ok(!again.some((e) => e.kind === "createChannel"), "asked once");
});

Deno.test("an unsigned welcome on a join dial fails the join: one INVALID_SIG and the connection closes", () => {
  const h = dialing();
  const fx = h.frame(20, {
    type: "SERVER_WELCOME",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { assigned_id: "x" },
  });
  assert.deepEqual(errors(fx), ["INVALID_SIG"]);
  assert.deepEqual(closes(fx), [{ conn: 20, code: 1000 }]);
  assert.ok(
    fx.some((e) => e.kind === "log" && e.event === "join.wrong_key" && e.fields.presented === "(none named)"),
  );
  assert.notEqual(h.state.join.phase, "joined");
});

Deno.test("a welcome verified with another key than the entry's is refused the same way", () => {
  const h = dialing();
  const fx = h.frame(
    20,
    { type: "SERVER_WELCOME", from: S2, to: SERVER, ts: h.now, payload: { assigned_id: "x" }, sig: "S" },
    "valid",
    S3K,
  );
  assert.deepEqual(errors(fx), ["INVALID_SIG"]);
  assert.equal(h.state.links.size, 0);
});

Deno.test("an ERROR answering our JOIN is logged, not answered, and the connection closes (next entry)", () => {
  const h = dialing();
  const fx = h.frame(
    20,
    { type: "ERROR", from: S2, to: SERVER, ts: h.now, payload: { code: "BAD_KEY", detail: "no" }, sig: "S" },
    "valid",
    S2K,
  );
  assert.deepEqual(errors(fx), [], "never an ERROR for an ERROR");
  assert.deepEqual(closes(fx), [{ conn: 20, code: 1000 }]);
  const next = dials(h.step({ kind: "closed", conn: 20, now: h.now }));
  assert.equal(next.length, 1, "the list is tried again");
});
