/**
 * Property: well-formed signed frames are accepted. The fuzzer (fuzz_test.ts) shows that hostile frames are
 * refused without harm; a node that refused everything would pass it. Here fast-check builds valid envelopes of
 * each type, with drawn contents, signed by the party the node expects (simulated signatures through the
 * pipeline's verify port), and sends them through the shell's inbound pipeline (lib/net/inbound.ts) to the
 * reducer: no ERROR comes back, nothing is closed, no strike is counted, and the frame has its effect (the DM is
 * delivered, the user is listed, the link is up, ...).
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { fixtureKey } from "../helpers/keys.ts";
import { type FuzzKeys, Pipeline, S2, VALID_SIG, world } from "../helpers/fuzz.ts";
import { ALICE, BOB, closes, errors, sent, SERVER } from "../helpers/reducer.ts";
import type { Effect } from "../../lib/core/types.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";

const keys: FuzzKeys = {
  user: (await fixtureKey("user1")).publicKey,
  server: (await fixtureKey("user4")).publicKey,
};
/** Another server's key (a newcomer linking to us). */
const OTHER_SERVER = (await fixtureKey("user5")).publicKey;

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 0x50c9);
const RUNS = { seed: SEED, numRuns: 60 };

const b64 = (min: number, max: number) =>
  fc.uint8Array({ minLength: min, maxLength: max }).map(encodeBase64Url);
const uuid = fc.uuid({ version: 4 });
/** Clock skew within what the node accepts (PROFILE §16 freshness, 10 minutes). */
const skew = fc.integer({ min: -5 * 60_000, max: 5 * 60_000 });

/** Send signed frames (back to back, as over a socket) on `conn`; the effects once all reached the reducer. */
async function send(
  p: Pipeline,
  conn: number,
  ...frames: Record<string, unknown>[]
): Promise<Effect[]> {
  for (const f of frames) p.receive(conn, JSON.stringify({ ...f, sig: VALID_SIG }));
  return await p.settle();
}

/** Accepted: no ERROR to anyone, nothing closed, no strike on the sender, no pipeline failure. */
function accepted(p: Pipeline, conn: number, effects: Effect[]): void {
  assert.deepEqual(errors(effects), [], "no ERROR");
  assert.deepEqual(closes(effects), [], "nothing closed");
  assert.equal(p.h.state.conns.get(conn)?.strikes ?? 0, 0, "no strike");
  assert.deepEqual(p.problems, []);
}

Deno.test("accepted: a signed MSG_DIRECT from a local user is delivered to the local recipient", async () => {
  await fc.assert(
    fc.asyncProperty(b64(1, 2048), b64(1, 512), skew, async (ct, cs, dt) => {
      const p = new Pipeline(world(keys));
      const payload = { ciphertext: ct, sender_pub: keys.user, content_sig: cs };
      const fx = await send(p, 1, { type: "MSG_DIRECT", from: ALICE, to: BOB, ts: p.h.now + dt, payload });
      accepted(p, 1, fx);
      const out = sent(fx, 2).find((f) => f.type === "USER_DELIVER");
      assert.ok(out?.type === "USER_DELIVER", "delivered to Bob's connection");
      assert.equal(out.payload.ciphertext, ct);
      assert.equal(out.payload.content_sig, cs);
      assert.equal(out.payload.sender, ALICE);
    }),
    RUNS,
  );
});

Deno.test("accepted: a signed SERVER_DELIVER from a linked server is delivered to the local user", async () => {
  await fc.assert(
    fc.asyncProperty(b64(1, 2048), b64(1, 512), uuid, skew, async (ct, cs, sender, dt) => {
      const p = new Pipeline(world(keys));
      const payload = { user_id: ALICE, ciphertext: ct, sender, sender_pub: keys.user, content_sig: cs };
      const fx = await send(p, 10, {
        type: "SERVER_DELIVER",
        from: S2,
        to: SERVER,
        ts: p.h.now + dt,
        payload,
      });
      accepted(p, 10, fx);
      const out = sent(fx, 1).find((f) => f.type === "USER_DELIVER");
      assert.ok(out?.type === "USER_DELIVER", "delivered to Alice's connection");
      assert.equal(out.payload.ciphertext, ct);
      assert.equal(out.payload.sender, sender);
    }),
    RUNS,
  );
});

Deno.test("accepted: a signed USER_ADVERTISE then USER_REMOVE from a linked server list then unlist the user", async () => {
  await fc.assert(
    fc.asyncProperty(uuid, fc.string({ minLength: 1, maxLength: 40 }), skew, async (user, name, dt) => {
      const p = new Pipeline(world(keys));
      const ts = p.h.now + dt;
      const ad = await send(p, 10, {
        type: "USER_ADVERTISE",
        from: S2,
        to: "*",
        ts,
        payload: { user_id: user, server_id: S2, meta: { display_name: name }, pubkey: keys.user },
      });
      accepted(p, 10, ad);
      assert.equal(p.h.state.presence.get(user)?.serverId, S2, "listed at S2");
      assert.ok(sent(ad, 1).some((f) => f.type === "USER_ADVERTISE"), "and told to local users");
      const rm = await send(p, 10, {
        type: "USER_REMOVE",
        from: S2,
        to: "*",
        ts: ts + 1,
        payload: { user_id: user, server_id: S2 },
      });
      accepted(p, 10, rm);
      assert.equal(p.h.state.presence.has(user), false, "unlisted");
    }),
    RUNS,
  );
});

Deno.test("accepted: a signed USER_HELLO and a DM sent right behind it (verified again once the key is known)", async () => {
  await fc.assert(
    fc.asyncProperty(
      uuid,
      b64(1, 1024),
      fc.string({ minLength: 1, maxLength: 20 }),
      async (user, ct, client) => {
        const p = new Pipeline(world(keys));
        p.feed({ kind: "connected", conn: 40, addr: "10.9.0.1", now: p.h.now });
        p.take();
        const hello = {
          type: "USER_HELLO",
          from: user,
          to: "",
          ts: p.h.now,
          payload: { client, pubkey: keys.user, enc_pubkey: keys.user, ts: p.h.now, nonce: `n-${user}` },
        };
        // The DM arrives before the hello is reduced: its signature check starts with no key for the sender and
        // must be made again in its turn, with the key the hello bound.
        const dm = {
          type: "MSG_DIRECT",
          from: user,
          to: BOB,
          ts: p.h.now,
          payload: { ciphertext: ct, sender_pub: keys.user, content_sig: "AA" },
        };
        const fx = await send(p, 40, hello, dm);
        accepted(p, 40, fx);
        assert.equal(p.h.state.localUsers.get(user), 40, "the user is online on its connection");
        assert.ok(sent(fx, 40).some((f) => f.type === "ACK"), "its hello is acknowledged");
        const out = sent(fx, 2).find((f) => f.type === "USER_DELIVER");
        assert.ok(
          out?.type === "USER_DELIVER" && out.payload.ciphertext === ct,
          "its DM is delivered to Bob",
        );
      },
    ),
    RUNS,
  );
});

Deno.test("accepted: a signed SERVER_HELLO_LINK from a new server, then its HEARTBEAT", async () => {
  await fc.assert(
    fc.asyncProperty(uuid, fc.integer({ min: 1, max: 65535 }), async (id, port) => {
      const p = new Pipeline(world(keys));
      const link = await send(p, 31, {
        type: "SERVER_HELLO_LINK",
        from: id,
        to: SERVER,
        ts: p.h.now,
        payload: { host: "127.0.0.1", port, pubkey: OTHER_SERVER },
      });
      accepted(p, 31, link);
      assert.equal(p.h.state.links.get(id), 31, "linked");
      const hb = await send(p, 31, { type: "HEARTBEAT", from: id, to: SERVER, ts: p.h.now, payload: {} });
      accepted(p, 31, hb);
    }),
    RUNS,
  );
});
