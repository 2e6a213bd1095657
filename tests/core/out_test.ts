/** lib/core/out.ts: the effect builder every handler writes to. */
import assert from "node:assert/strict";
import { Out } from "../../lib/core/out.ts";
import { DEFAULT_LIMITS } from "../../lib/core/types.ts";
import { config, Harness, SERVER, T0 } from "../helpers/reducer.ts";

Deno.test("frames are ours at the step's time; a send marks the connection's last send", () => {
  const h = new Harness();
  h.connect(1);
  const out = new Out(h.state, T0 + 7);
  const f = out.frame("HEARTBEAT", "x", {});
  assert.deepEqual(f, { type: "HEARTBEAT", from: SERVER, to: "x", ts: T0 + 7, payload: {} });
  out.send(1, f);
  assert.equal(h.state.conns.get(1)?.lastSent, T0 + 7);
  assert.deepEqual(out.effects, [{ kind: "send", conn: 1, frame: f, sign: true }]);
});

Deno.test("errors with a strike close the connection at maxStrikes (errors without one do not count)", () => {
  const h = new Harness(config({ limits: { ...DEFAULT_LIMITS, maxStrikes: 3 } }));
  h.connect(1);
  const out = new Out(h.state, T0);
  out.error(1, "u", "UNKNOWN_TYPE", "one", true);
  out.error(1, "u", "UNKNOWN_TYPE", "two", false);
  out.error(1, "u", "UNKNOWN_TYPE", "three", true);
  assert.equal(out.effects.filter((e) => e.kind === "close").length, 0, "two strikes");
  out.error(1, "u", "UNKNOWN_TYPE", "four", true);
  const close = out.effects.filter((e) => e.kind === "close");
  assert.equal(close.length, 1);
  assert.ok(close[0].kind === "close" && close[0].code === 1008 && close[0].reason.includes("last: four"));
  out.strike(99, "no such connection"); // harmless
});
