/** lib/core/verify.ts: which key a frame's signature must verify with, as a pure query on the state. */
import assert from "node:assert/strict";
import type { AnyEnvelope } from "../../lib/protocol/envelope.ts";
import type { Conn, DialIntent } from "../../lib/core/types.ts";
import { expectedKey, signedUnderAlias } from "../../lib/core/verify.ts";
import { ALICE, Harness } from "../helpers/reducer.ts";

const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const S3 = "5e3f0000-0000-4000-8000-00000000c0de";

function env(type: string, from: string, payload: Record<string, unknown> = {}): AnyEnvelope {
  return { type, from, to: "*", ts: 0, payload } as unknown as AnyEnvelope;
}

function conn(over: Partial<Conn>): Conn {
  return {
    id: 1,
    addr: "a",
    openedAt: 0,
    role: "pending",
    strikes: 0,
    tokens: 1,
    refilledAt: 0,
    throttled: false,
    pemDialect: false,
    lastSeen: 0,
    lastSent: 0,
    ...over,
  };
}

function state() {
  const h = new Harness();
  h.state.servers.set(S2, { serverId: S2, host: "h", port: 1, pubkey: "K-S2" });
  h.state.servers.set(S3, { serverId: S3, host: "h", port: 2, pubkey: "K-S3" });
  h.state.users.set(ALICE, {
    userId: ALICE,
    pubkey: "K-ALICE",
    encPubkey: "K-ALICE",
    meta: null,
    version: 1,
  });
  return h.state;
}

Deno.test("a user's frames verify with the user's bound key; no connection, no key", () => {
  const s = state();
  assert.equal(expectedKey(s, conn({ role: "user", userId: ALICE }), env("MSG_DIRECT", ALICE)), "K-ALICE");
  assert.equal(expectedKey(s, undefined, env("MSG_DIRECT", ALICE)), undefined);
});

Deno.test("an inbound first frame: a hello with the key it presents, a dial-back sync with the pinned key", () => {
  const s = state();
  const c = conn({});
  assert.equal(expectedKey(s, c, env("USER_HELLO", ALICE, { pubkey: "K-NEW" })), "K-NEW");
  assert.equal(expectedKey(s, c, env("SERVER_HELLO_LINK", S2, { pubkey: "K-CLAIMED" })), "K-CLAIMED");
  assert.equal(expectedKey(s, c, env("SERVER_PRESENCE_SYNC", S2)), "K-S2", "pinned, not presented");
  assert.equal(expectedKey(s, c, env("MSG_DIRECT", ALICE)), undefined, "no key for anything else");
});

Deno.test("on a connection we dialed: the answer to our hello with the key we dialed for; a link's frames as a link's", () => {
  const s = state();
  const dial = (d: Partial<DialIntent>): Conn =>
    conn({ dial: { token: 1, purpose: "join", host: "h", port: 1, expectKey: "K-ENTRY", ...d } });
  assert.equal(expectedKey(s, dial({}), env("SERVER_WELCOME", S2)), "K-ENTRY");
  assert.equal(expectedKey(s, dial({}), env("ERROR", S2)), "K-ENTRY");
  assert.equal(expectedKey(s, dial({}), env("HEARTBEAT", S2)), undefined, "a join dial expects its welcome");
  const link = dial({ purpose: "link", serverId: S2, expectKey: "K-S2" });
  assert.equal(expectedKey(s, link, env("HEARTBEAT", S2)), "K-S2");
  assert.equal(expectedKey(s, link, env("USER_ADVERTISE", S3)), "K-S3", "a relayed frame: its origin's key");
});

Deno.test("on a link: user frames and aliases with the link's key, a newcomer's announce with the key it presents", () => {
  const s = state();
  const link = conn({ role: "server", serverId: S2 });
  assert.equal(expectedKey(s, link, env("MSG_PUBLIC_CHANNEL", ALICE)), "K-S2", "re-signed by each forwarder");
  assert.equal(expectedKey(s, link, env("USER_REMOVE", S3)), "K-S3");
  assert.equal(signedUnderAlias(s, S2, env("HEARTBEAT", "key1")), true);
  assert.equal(expectedKey(s, link, env("HEARTBEAT", "key1")), "K-S2", "an alias: the link's server");
  const newcomer = "7a7a0000-0000-4000-8000-000000000007";
  const announce = env("SERVER_ANNOUNCE", newcomer, { host: "n", port: 3, pubkey: "K-NEWCOMER" });
  assert.equal(signedUnderAlias(s, S2, announce), false, "it presents its own key");
  assert.equal(expectedKey(s, link, announce), "K-NEWCOMER");
  s.servers.set(newcomer, { serverId: newcomer, host: "n", port: 3, pubkey: "K-PINNED" });
  assert.equal(expectedKey(s, link, announce), "K-PINNED", "once pinned, the pin wins");
});
