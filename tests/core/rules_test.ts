/**
 * lib/core/rules.ts: the rule table. Its shape (every hello accepted only as a first frame, the quiet and
 * tolerant rows) and the row fields the reducer applies, each through `reduce`.
 */
import assert from "node:assert/strict";
import { ruleOfName, RULES, tolerated } from "../../lib/core/rules.ts";
import { isMessageType } from "../../lib/protocol/messages.ts";
import { closes, Harness, sent } from "../helpers/reducer.ts";
import { fixtureKey } from "../helpers/keys.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const ALICE = "a11ce000-0000-4000-8000-000000000001";

Deno.test("every row names a known type; hellos are accepted only on a pending connection", () => {
  for (const [type, row] of Object.entries(RULES)) {
    assert.ok(isMessageType(type), type);
    assert.ok(Object.keys(row!.from).length > 0, `${type} is accepted from someone`);
    if (row!.hello) assert.ok(row!.from.pending, `${type}: a hello opens a connection`);
    if (row!.replayInMemory) {
      assert.equal(row!.replay, "payload", `${type}: replayInMemory needs payload keys`);
    }
  }
  assert.equal(ruleOfName("NOT_A_TYPE"), undefined);
  assert.equal(ruleOfName(undefined), undefined);
  assert.equal(tolerated("PUBLIC_CHANNEL_ADD"), true);
  assert.equal(tolerated("MSG_DIRECT"), false);
});

Deno.test("onlyFirst: a second USER_HELLO is told the connection is identified already", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.now += 1;
  const fx = h.hello(1, ALICE, K1);
  const [err] = sent(fx, 1);
  assert.equal(err.type, "ERROR");
  assert.match((err.payload as { detail: string }).detail, /already identified as/);
});

Deno.test("quiet: an ERROR is never answered with an ERROR, parsed or not", () => {
  const h = new Harness();
  h.connect(1);
  h.hello(1, ALICE, K1);
  const fx = h.frame(1, { type: "ERROR", from: ALICE, to: "", ts: h.now, payload: { code: "TIMEOUT" } });
  assert.deepEqual(sent(fx), [], "a user's ERROR is not accepted, and not answered");
  const bad = h.frame(1, { type: "ERROR", from: ALICE, to: "", ts: h.now, payload: "not an object" });
  assert.deepEqual(sent(bad), [], "nor an unreadable one");
  const other = h.frame(1, { type: "MSG_DIRECT", from: ALICE, to: "", ts: h.now, payload: "not an object" });
  assert.equal(sent(other)[0]?.type, "ERROR", "another type's unreadable frame is answered");
  assert.deepEqual(closes(fx), []);
});
