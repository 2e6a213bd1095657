/** lib/core/links.ts: pins and their standing, redial backoff, the ACK extension, the allowed-keys list. */
import assert from "node:assert/strict";
import {
  ackMode,
  allowedServerKey,
  confirmPin,
  FIRST_BACKOFF_MS,
  MAX_BACKOFF_MS,
  pin,
  scheduleRedial,
} from "../../lib/core/links.ts";
import { Out } from "../../lib/core/out.ts";
import { initState } from "../../lib/core/reduce.ts";
import { DEFAULT_FEDERATION, type Effect } from "../../lib/core/types.ts";
import { config, T0 } from "../helpers/reducer.ts";

const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const persisted = (fx: Effect[]) => fx.filter((e) => e.kind === "persist").length;

Deno.test("a pin's standing only grows: a claimed pin is not persisted until a verified frame proves it", () => {
  const s = initState(config());
  const out = new Out(s, T0);
  pin(out, { serverId: S2, host: "h", port: 1, pubkey: "K", claimed: true });
  assert.equal(persisted(out.effects), 0, "an unsigned JOIN's pin lives in memory");
  pin(out, { serverId: S2, host: "h", port: 1, pubkey: "K", claimed: true });
  confirmPin(out, S2);
  assert.equal(s.servers.get(S2)?.claimed, undefined);
  assert.equal(persisted(out.effects), 1, "proven: persisted");
  const weaker = new Out(s, T0);
  pin(weaker, { serverId: S2, host: "h", port: 1, pubkey: "K", claimed: true });
  assert.equal(s.servers.get(S2)?.claimed, undefined, "a weaker source never demotes it");
  assert.equal(persisted(weaker.effects), 0, "nothing changed");
  const moved = new Out(s, T0);
  pin(moved, { serverId: S2, host: "h2", port: 2, pubkey: "K" });
  assert.equal(persisted(moved.effects), 1, "a new address is persisted");
});

Deno.test("redials back off 1, 2, 4 … s up to a minute, one pending dial per server, never a claimed pin", () => {
  const s = initState(config());
  s.servers.set(S2, { serverId: S2, host: "h", port: 1, pubkey: "K" });
  const waits: number[] = [];
  for (let i = 0; i < 9; i++) {
    const out = new Out(s, T0);
    scheduleRedial(out, S2);
    scheduleRedial(out, S2);
    const dials = out.effects.filter((e) => e.kind === "dial");
    assert.equal(dials.length, 1, "one pending dial");
    waits.push(dials[0].kind === "dial" ? dials[0].afterMs : -1);
    s.dials.clear(); // that dial failed
  }
  assert.equal(waits[0], FIRST_BACKOFF_MS);
  assert.deepEqual(waits.slice(0, 4), [1000, 2000, 4000, 8000]);
  assert.equal(waits.at(-1), MAX_BACKOFF_MS);
  s.servers.set(S2, { serverId: S2, host: "h", port: 1, pubkey: "K", claimed: true });
  const claimed = new Out(s, T0);
  scheduleRedial(claimed, S2);
  assert.deepEqual(claimed.effects, [], "an address no verified frame vouched for is never dialed");
});

Deno.test("the ACK extension only for servers that say socp/…; unknown until they said", () => {
  const s = initState(config());
  assert.equal(ackMode(s, S2), "unknown");
  s.peerSoftware.set(S2, "socp-deno/0.1.0");
  assert.equal(ackMode(s, S2), "yes");
  s.peerSoftware.set(S2, "");
  assert.equal(ackMode(s, S2), "no");
});

Deno.test("allowedServerKeys: empty admits every key, else only the listed ones", () => {
  const open = initState(config());
  assert.equal(allowedServerKey(open, "ANY"), true);
  const closed = initState(config({ federation: { ...DEFAULT_FEDERATION, allowedServerKeys: ["K1"] } }));
  assert.equal(allowedServerKey(closed, "K1"), true);
  assert.equal(allowedServerKey(closed, "K2"), false);
});
