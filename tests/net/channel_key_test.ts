/**
 * The channel-key holder alone (lib/net/channel_key.ts), over the real store in memory and the executor's
 * crash-only writes: a key created or adopted is sealed and kept, then the reducer hears `channelReady`; a failed
 * write stops the node (reported once), the reducer hears nothing and the key is not used; after any failed write
 * the holder writes nothing; a wrapped key that does not match its creator is refused.
 */
import assert from "node:assert/strict";
import type { Event } from "../../lib/core/types.ts";
import { encryptTo } from "../../lib/crypto/rsa.ts";
import { ChannelKeyHolder } from "../../lib/net/channel_key.ts";
import { Logger } from "../../lib/net/log.ts";
import { CrashOnlyWrites } from "../../lib/net/persist.ts";
import { Store } from "../../lib/store/sqlite.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";
import { fixtureKey, TEST_NODE_SECRET } from "../helpers/keys.ts";

const serverKey = await fixtureKey("user6");
const channelKey = await fixtureKey("user5");

function holder(opts: { failOn?: "setChannelKey" | "setChannel" } = {}) {
  const store = Store.open(":memory:");
  const events: Event[] = [];
  const failures: unknown[] = [];
  const lines: string[] = [];
  const log = new Logger("debug", (l) => lines.push(l));
  const writes = new CrashOnlyWrites(log, (e) => failures.push(e));
  if (opts.failOn) {
    store[opts.failOn] = () => {
      throw new Error("disk full");
    };
  }
  let settled!: () => void;
  const done = new Promise<void>((r) => settled = r);
  const ck = new ChannelKeyHolder({
    key: serverKey,
    secret: TEST_NODE_SECRET,
    store,
    write: (f) => writes.write(f),
    dispatch: (ev) => (events.push(ev), settled()),
    log,
    now: () => 7,
    generate: () => Promise.resolve(channelKey),
  }, null);
  return { ck, store, events, failures, writes, lines, done, settled };
}

/** A frame sealed for `forKey` (a welcome that carries the wrapped channel key). */
const welcome = (): Envelope =>
  ({
    type: "SERVER_WELCOME",
    from: "s",
    to: "u",
    ts: 1,
    payload: { public_channel: { version: 1, wrapped_key: "" } },
    sig: "",
  }) as unknown as Envelope;

Deno.test("a created channel key is sealed and kept through the crash-only writes, then the reducer hears", async () => {
  const { ck, store, events, failures, done } = holder();
  try {
    ck.create();
    await ck.pending();
    await done;
    assert.deepEqual(events.map((e) => e.kind), ["channelReady"]);
    assert.equal(store.getChannelKey()?.creatorPub, channelKey.publicKey);
    assert.equal(store.load(7).channel?.version, 1);
    assert.deepEqual(failures, []);
    const f = welcome();
    assert.equal(await ck.seal(f, { kind: "welcome", forKey: serverKey.publicKey }), true);
    const wrapped = (f.payload as { public_channel: { wrapped_key: string } }).public_channel.wrapped_key;
    assert.deepEqual(await serverKey.decrypt(wrapped), await channelKey.exportPkcs8());
  } finally {
    store.close();
  }
});

for (const failOn of ["setChannelKey", "setChannel"] as const) {
  Deno.test(`a failed ${failOn} write stops the node: reported once, the reducer hears nothing, the key is unused`, async () => {
    const { ck, store, events, failures, writes, lines } = holder({ failOn });
    try {
      ck.create();
      await ck.pending(); // start is not held forever by a key that could not be kept
      assert.equal(failures.length, 1);
      assert.match(String(failures[0]), /disk full/);
      assert.equal(writes.failed, true);
      assert.ok(lines.some((l) => l.includes("store.write_failed")));
      assert.ok(!lines.some((l) => l.includes("channel.created")), "no claim that it was created");
      assert.deepEqual(events, [], "no channelReady for a key the disk does not hold");
      if (failOn === "setChannel") assert.ok(store.getChannelKey(), "the first write happened");
      assert.equal(store.load(7).channel?.version ?? null, failOn === "setChannel" ? 1 : null);
      assert.equal(await ck.seal(welcome(), { kind: "welcome", forKey: serverKey.publicKey }), false);
    } finally {
      store.close();
    }
  });
}

Deno.test("after a failed write elsewhere, an adopted channel key is not written (crash-only)", async () => {
  const { ck, store, events, failures, writes } = holder();
  try {
    writes.write(() => {
      throw new Error("disk full elsewhere");
    });
    const wrapped = await encryptTo(serverKey.publicKey, await channelKey.exportPkcs8());
    const write = writes.write;
    let asked!: () => void;
    const askedP = new Promise<void>((r) => asked = r);
    writes.write = (f) => (asked(), write(f));
    ck.adopt(2, channelKey.publicKey, wrapped);
    // The adoption ends in the holder's writes (refused): wait for it to ask.
    await askedP;
    assert.equal(store.getChannelKey(), null);
    assert.deepEqual(events, []);
    assert.equal(failures.length, 1, "the first failure only");
  } finally {
    store.close();
  }
});

Deno.test("an adopted key is kept; one that does not match its creator is refused", async () => {
  const ok = holder();
  const bad = holder();
  try {
    const wrapped = await encryptTo(serverKey.publicKey, await channelKey.exportPkcs8());
    ok.ck.adopt(3, channelKey.publicKey, wrapped);
    await ok.done;
    assert.deepEqual(ok.events.map((e) => e.kind), ["channelReady"]);
    assert.equal(ok.store.load(7).channel?.version, 3);
    bad.ck.adopt(3, serverKey.publicKey, wrapped);
    await bad.done;
    assert.deepEqual(bad.events.map((e) => e.kind), ["channelFailed"]);
    assert.equal(bad.store.getChannelKey(), null);
  } finally {
    ok.store.close();
    bad.store.close();
  }
});
