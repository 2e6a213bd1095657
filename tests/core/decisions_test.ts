/**
 * Decisions the reducer makes and hands to the shell in its effects (issue 10): the first server's channel key,
 * the dial endpoint and its give-up time, the expiry cut-off of stored frames. Plus the one home of `msg_ref`
 * and of the key policy.
 */
import assert from "node:assert/strict";
import { DEFAULT_FEDERATION, endpointUrl } from "../../lib/core/types.ts";
import { sha256Sync as sha256 } from "../../lib/net/digest.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { keyPolicy } from "../../lib/protocol/keys.ts";
import { msgRef } from "../../lib/protocol/msg_ref.ts";
import { canonicalPayloadBytes } from "../../lib/protocol/preimages.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { ALICE, BOB, config, Harness, joining } from "../helpers/reducer.ts";

const K1 = (await fixtureKey("user1")).publicKey;
const K2 = (await fixtureKey("user2")).publicKey;
const S2K = (await fixtureKey("user4")).publicKey;

Deno.test("the first server of a network asks for the channel key at start; a joiner or a node holding one does not", () => {
  const first = new Harness();
  const fx = first.step({ kind: "started", now: first.now, host: "127.0.0.1", port: 1 });
  assert.deepEqual(fx.filter((e) => e.kind === "createChannel").length, 1);
  assert.equal(first.state.channelPending, true);

  const bootstrap = [{ host: "i", port: 1, pubkey: S2K }];
  const intro = new Harness(config({ federation: { ...DEFAULT_FEDERATION, introducer: true, bootstrap } }));
  const ifx = intro.step({ kind: "started", now: intro.now, host: "127.0.0.1", port: 1 });
  assert.equal(ifx.filter((e) => e.kind === "createChannel").length, 1, "an --introducer with a list too");

  const holder = new Harness();
  holder.state.channel = { version: 3, creatorPub: K1, members: new Set() };
  const hfx = holder.step({ kind: "started", now: holder.now, host: "127.0.0.1", port: 1 });
  assert.equal(hfx.filter((e) => e.kind === "createChannel").length, 0);

  const joiner = new Harness(joining([{ host: "i", port: 1, pubkey: S2K }]));
  const jfx = joiner.step({ kind: "started", now: joiner.now, host: "127.0.0.1", port: 2 });
  assert.equal(jfx.filter((e) => e.kind === "createChannel").length, 0);
});

Deno.test("a dial effect carries host, port, scheme, path and the configured give-up time", () => {
  const cfg = joining([{ host: "intro", port: 8080, pubkey: S2K, path: "/chat", tls: true }]);
  cfg.federation.dialTimeoutMs = 2500;
  const h = new Harness(cfg);
  const [d] = h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 2 }).filter((e) =>
    e.kind === "dial"
  );
  assert.ok(d && d.kind === "dial");
  assert.deepEqual(
    { host: d.host, port: d.port, scheme: d.scheme, path: d.path, timeoutMs: d.timeoutMs },
    { host: "intro", port: 8080, scheme: "wss", path: "/chat", timeoutMs: 2500 },
  );
  assert.equal(endpointUrl(d), "wss://intro:8080/chat");

  const plain = new Harness(joining([{ host: "::1", port: 9, pubkey: S2K }]));
  const [p] = plain.step({ kind: "started", now: plain.now, host: "127.0.0.1", port: 2 }).filter((e) =>
    e.kind === "dial"
  );
  assert.ok(p && p.kind === "dial");
  assert.deepEqual([p.scheme, p.path, p.timeoutMs], ["ws", "", DEFAULT_FEDERATION.dialTimeoutMs]);
  assert.equal(endpointUrl(p), "ws://[::1]:9");
});

Deno.test("queued frames are handed over with the expiry cut-off the reducer computed (now - queueTtlMs)", () => {
  const h = new Harness();
  h.state.config.limits.queueTtlMs = 60_000;
  h.state.channel = { version: 1, creatorPub: K1, members: new Set() };
  h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  h.connect(2);
  h.hello(2, BOB, K2);
  h.step({ kind: "closed", conn: 2, now: h.now });
  h.connect(1);
  h.hello(1, ALICE, K1);
  h.frame(1, {
    type: "MSG_DIRECT",
    from: ALICE,
    to: BOB,
    ts: h.now,
    payload: { ciphertext: "C", sender_pub: "P", content_sig: "S" },
  });
  h.now += 5000;
  h.connect(3);
  const d = h.hello(3, BOB, K2).find((e) => e.kind === "deliverQueued");
  assert.ok(d && d.kind === "deliverQueued");
  assert.equal(d.notBefore, h.now - 60_000);
});

Deno.test("msg_ref has one definition: base64url of the SHA-256 of the canonical payload, from bytes or hex", () => {
  const payload = { b: 1, a: "x" };
  const digest = sha256(canonicalPayloadBytes(payload));
  const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(msgRef(digest), encodeBase64Url(digest));
  assert.equal(msgRef(hex), msgRef(digest));
  assert.match(msgRef(hex), /^[A-Za-z0-9_-]{43}$/);
});

Deno.test("the key policy: RSA-4096 only, unless the weak-keys lab mode adds the smaller sizes", () => {
  assert.deepEqual(keyPolicy(false).allowedBits, [4096]);
  assert.deepEqual(keyPolicy(true).allowedBits, [1024, 2048, 3072, 4096]);
});
