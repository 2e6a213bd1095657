/**
 * The client core's connection policy on fake time (lib/client/connection.ts): when it asks for a socket (start,
 * reconnect with backoff, retry now), when it gives an attempt up, the one deadline it says for all of it, and
 * what is written before the first connection (queued, sent once).
 */
import assert from "node:assert/strict";
import { SNAPSHOT_WAIT_MS } from "../../lib/client/core.ts";
import type { Output } from "../../lib/client/types.ts";
import { keySharePreimage } from "../../lib/protocol/preimages.ts";
import { CoreDriver, type Frame, signed } from "../helpers/core_driver.ts";
import { fixtureKey } from "../helpers/keys.ts";

const ME = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const SRV = "server-one";
const [meKey, srvKey, bobKey, chanKey] = await Promise.all(
  ["user1", "user2", "user3", "user4"].map(fixtureKey),
);

const opens = (outs: Output[]) => outs.filter((o) => o.kind === "open").length;

/** Hand the core a socket that opened, and our server's answer. */
async function accept(d: CoreDriver): Promise<void> {
  d.core.opened(d.now, `nonce-${d.now}`);
  await d.settle();
  await d.helloAck(srvKey, SRV);
  await d.frame(
    await signed(srvKey, {
      type: "USER_ADVERTISE",
      from: SRV,
      to: "*",
      payload: { user_id: ME, server_id: SRV, pubkey: meKey.publicKey, meta: { display_name: "me" } },
    }),
  );
}

Deno.test("start asks for a socket; failed attempts are retried at 1, 2, 4 … s up to the cap, each said once", async () => {
  const d = new CoreDriver(meKey, { userId: ME, backoffMs: 1000, maxBackoffMs: 4000 });
  assert.equal(d.core.nextDeadline(), undefined, "nothing planned before start");
  d.core.start(d.now);
  assert.equal(opens(await d.settle()), 1);
  const waits: number[] = [];
  for (let i = 0; i < 4; i++) {
    d.core.closed(d.now, 1006, "", "cannot connect to the test");
    await d.settle();
    const r = d.of("reconnecting").at(-1)!;
    waits.push(r.inMs);
    assert.equal(r.error, "cannot connect to the test");
    assert.equal(d.core.nextDeadline(), d.now + r.inMs, "the deadline is the reconnect");
    await d.tick(r.inMs - 1);
    assert.equal(opens(d.core.drain()), 0, "not before its time");
    d.now += 1;
    d.core.tick(d.now);
    assert.equal(opens(await d.settle()), 1, "at its time");
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 4000]);
  assert.equal(d.of("closed").length, 0, "a socket that never opened is not a 'closed' connection");
  // Accepted: the next drop starts from the first delay again.
  await accept(d);
  d.core.closed(d.now, 1006, "gone");
  await d.settle();
  assert.equal(d.of("reconnecting").at(-1)!.inMs, 1000);
  assert.equal(d.of("closed").length, 1);
});

Deno.test("an attempt with no accepted hello is given up at the timeout (the shell is asked to close), then retried", async () => {
  const d = new CoreDriver(meKey, { userId: ME, connectTimeoutMs: 5000 });
  d.core.start(d.now);
  await d.settle();
  assert.equal(d.core.nextDeadline(), d.now + 5000);
  d.now += 5000;
  d.core.tick(d.now);
  const outs = await d.settle();
  const close = outs.find((o) => o.kind === "close");
  assert.ok(
    close && close.kind === "close" && /no answer within 5 s/.test(close.reason),
    JSON.stringify(outs),
  );
  assert.equal(d.core.nextDeadline(), undefined, "nothing else is planned until the socket closes");
  d.core.start(d.now);
  assert.equal(opens(await d.settle()), 0, "start is a no-op while a socket is asked for");
  d.core.closed(d.now, 1006, "", "cannot connect to the test");
  await d.settle();
  assert.match(d.of("reconnecting").at(-1)!.error!, /cannot connect to the test: no answer within 5 s/);
});

Deno.test("stopped, or refused: no reconnect; retryNow opens at once while a reconnect waits", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  d.core.start(d.now);
  await d.settle();
  d.core.closed(d.now, 1006, "", "x");
  await d.settle();
  assert.ok(d.core.nextDeadline()! > d.now);
  assert.equal(d.core.retryNow(d.now), true);
  assert.equal(opens(await d.settle()), 1);
  assert.equal(d.core.retryNow(d.now), false, "a socket is already asked for");
  d.core.stop();
  d.core.closed(d.now, 1006, "", "x");
  await d.settle();
  assert.equal(d.core.nextDeadline(), undefined, "stopped: nothing planned");
  assert.equal(d.of("reconnecting").length, 1);
  // Refused by the server: not retried until the shell starts it again.
  d.core.start(d.now);
  await d.settle();
  d.core.opened(d.now, "n");
  await d.settle();
  await d.frame({ type: "ERROR", from: SRV, to: ME, payload: { code: "BAD_KEY", detail: "no" } });
  d.core.closed(d.now, 1000, "");
  await d.settle();
  assert.equal(d.of("refused").length, 1);
  assert.equal(d.core.nextDeadline(), undefined);
  d.core.start(d.now);
  assert.equal(opens(await d.settle()), 1, "start after a refusal tries again (the user asked)");
});

Deno.test("the hello silence and the snapshot wait are deadlines too", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  d.core.start(d.now);
  await d.settle();
  d.core.opened(d.now, "n");
  await d.settle();
  const opened = d.now;
  assert.equal(d.core.nextDeadline(), opened + 3000, "the 3 s hello rule comes before the attempt timeout");
  await d.helloAck(srvKey, SRV);
  assert.equal(d.core.nextDeadline(), d.now + SNAPSHOT_WAIT_MS, "then the snapshot wait");
  await d.tick(SNAPSHOT_WAIT_MS);
  assert.equal(d.of("ready").length, 1);
  assert.equal(d.core.nextDeadline(), undefined, "online and idle: no timer at all");
});

Deno.test("written before the first connection: a DM to a contact and a public post wait, then go out once", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  d.core.addContacts([{
    userId: BOB,
    name: "bob",
    pubkey: bobKey.publicKey,
    fingerprint: "",
    serverId: SRV,
  }]);
  const dm = d.core.tell("bob", "early dm", d.now);
  const post = d.core.all("early post", d.now);
  await d.settle();
  assert.ok(d.settled.some((t) => t.ticket === dm.ticket) && d.settled.some((t) => t.ticket === post.ticket));
  assert.equal(d.sent.length, 0, "nothing is sent while offline");
  assert.deepEqual(d.core.messages().map((m) => m.state), ["sending", "sending"]);
  d.core.start(d.now);
  await d.settle();
  await accept(d);
  await d.tick(SNAPSHOT_WAIT_MS); // ready
  assert.throws(() => d.core.all("now", d.now), /has not arrived/, "ready without a key: said, not queued");
  // The public channel key arrives in the acceptance sequence (PROFILE §8).
  const wrapped = await d.crypto.run({
    op: "encrypt",
    key: meKey.publicKey,
    data: await chanKey.exportPkcs8(),
  });
  const shares = [{ member: ME, wrapped_public_channel_key: wrapped }];
  const content_sig = await chanKey.sign(keySharePreimage(shares, chanKey.publicKey));
  await d.frame(
    await signed(srvKey, {
      type: "PUBLIC_CHANNEL_KEY_SHARE",
      from: SRV,
      to: ME,
      payload: { shares, creator_pub: chanKey.publicKey, content_sig },
    } as Frame),
  );
  const types = () => d.sent.map((f) => f.type).filter((t) => t !== "USER_HELLO");
  assert.deepEqual(types(), ["MSG_DIRECT", "MSG_PUBLIC_CHANNEL"]);
  assert.deepEqual(d.core.messages().map((m) => m.state), ["sent", "sent"]);
  // A reconnect resends what was not accepted (the server's dedupe drops the copy), but nothing is built twice.
  assert.equal(
    new Set(d.sent.filter((f) => f.type !== "USER_HELLO").map((f) => f.payload.ciphertext)).size,
    2,
  );
});
