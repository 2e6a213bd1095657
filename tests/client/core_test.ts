/**
 * The client core driven by frame sequences, no sockets: hello acceptance in the four deployed forms (PROFILE
 * §15), the directory and its labels, contacts, message states and resends, signed user frames, plain-text
 * public messages, and file refusals reported once.
 */
import assert from "node:assert/strict";
import { FILE_CHUNK_BYTES, HELLO_SILENCE_MS, SNAPSHOT_WAIT_MS } from "../../lib/client/core.ts";
import { encryptTo, verifySignature } from "../../lib/crypto/rsa.ts";
import { encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { signaturePreimages } from "../../lib/protocol/canonical_json.ts";
import { dmPreimage, keySharePreimage, publicPreimage } from "../../lib/protocol/preimages.ts";
import { CoreDriver, type Frame, signed } from "../helpers/core_driver.ts";
import { fixtureKey } from "../helpers/keys.ts";

const ME = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const AL1 = "33333333-3333-4333-8333-333333333333";
const AL2 = "44444444-4444-4444-8444-444444444444";
const SRV = "server-one";

const [meKey, srvKey, bobKey, al2Key] = await Promise.all(
  ["user1", "user2", "user3", "user4"].map(fixtureKey),
);

function advert(userId: string, pubkey: string | undefined, name: string, serverId = SRV): Frame {
  const payload: Frame = { user_id: userId, server_id: serverId, meta: { display_name: name } };
  if (pubkey) payload.pubkey = pubkey;
  return { type: "USER_ADVERTISE", from: serverId, to: "*", payload };
}

/** A core whose hello our own server accepted (signed ACK, snapshot, own advert). */
async function online(opts: { serverId?: string; limits?: Frame } = {}): Promise<CoreDriver> {
  const { limits, ...rest } = opts;
  const d = new CoreDriver(meKey, { userId: ME, displayName: "me", ...rest });
  await d.open();
  await d.helloAck(srvKey, SRV, { limits });
  await d.frame(await signed(srvKey, advert(ME, meKey.publicKey, "me")));
  return d;
}

Deno.test("hello (our form): signed ACK with server_id and server_pub, then the snapshot; `to` is '*' first", async () => {
  const d = new CoreDriver(meKey, { userId: ME, displayName: "me" });
  const hello = await d.open();
  assert.equal(hello.type, "USER_HELLO");
  assert.equal(hello.to, "*", "server id unknown: '*' (some servers close on an empty to)");
  assert.ok(await verifySignature(meKey.publicKey, signaturePreimages(hello.payload)[0], hello.sig));
  await d.helloAck(srvKey, SRV);
  assert.equal(d.core.phase, "online");
  assert.equal(d.core.serverId, SRV);
  assert.equal(d.of("ready").length, 0, "waits for the snapshot");
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  await d.frame(await signed(srvKey, advert(ME, meKey.publicKey, "me")));
  assert.deepEqual(d.of("ready").map((e) => e.serverId), [SRV]);
  assert.ok(d.core.directory.get(BOB)!.verified);
  // Next connection: the server id is known, so `to` names it.
  d.core.closed(d.now, 1006, "");
  const again = await d.open();
  assert.equal(again.to, SRV);
});

Deno.test("hello: ACK{USER_HELLO_OK, server_pub} + CLIENT_WELCOME{server_id} is accepted", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  await d.open();
  await d.frame({
    type: "ACK",
    from: "srv-b",
    to: ME,
    ts: 1,
    payload: { msg_ref: "USER_HELLO_OK", server_pub: srvKey.publicKey },
  });
  assert.equal(d.core.phase, "online");
  await d.frame({ type: "CLIENT_WELCOME", from: "srv-b", to: ME, ts: 1, payload: { server_id: "srv-b-id" } });
  assert.equal(d.core.serverId, "srv-b-id");
  await d.tick(SNAPSHOT_WAIT_MS);
  assert.equal(d.of("ready").length, 1);
  assert.equal(d.of("warning").length, 0, JSON.stringify(d.events));
});

Deno.test("hello: ACK{message:'Welcome to the chat!'} from 'server' is accepted, the id learnt from `from`", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  await d.open();
  await d.frame({ type: "ACK", from: "server", to: ME, ts: 1, payload: { message: "Welcome to the chat!" } });
  assert.equal(d.core.phase, "online");
  assert.equal(d.core.serverId, "server");
  assert.equal(d.of("warning").length, 0, JSON.stringify(d.events));
  assert.equal(d.of("refused").length, 0);
});

Deno.test("hello: no answer at all is accepted after 3 s without an ERROR", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  await d.open();
  await d.tick(HELLO_SILENCE_MS - 1);
  assert.equal(d.core.phase, "hello");
  await d.tick(1);
  assert.equal(d.core.phase, "online");
  assert.equal(d.of("ready").length, 1);
});

Deno.test("hello: an ERROR refuses it (no acceptance by silence after), and a forged ACK signature too", async () => {
  const d = new CoreDriver(meKey, { userId: ME });
  await d.open();
  await d.frame({
    type: "ERROR",
    from: SRV,
    to: ME,
    ts: 1,
    payload: { code: "NAME_IN_USE", detail: "taken" },
  });
  await d.tick(HELLO_SILENCE_MS);
  assert.equal(d.core.phase, "refused");
  assert.deepEqual(d.of("refused"), [{ kind: "refused", code: "NAME_IN_USE", detail: "taken" }]);
  assert.equal(d.of("ready").length, 0);

  const f = new CoreDriver(meKey, { userId: ME });
  await f.open();
  const ack = await signed(bobKey, {
    type: "ACK",
    from: SRV,
    to: ME,
    payload: { msg_ref: "USER_HELLO", server_id: SRV, server_pub: srvKey.publicKey },
  });
  await f.frame(ack);
  assert.equal(f.core.phase, "refused");
  assert.equal(f.of("refused")[0].code, "INVALID_SIG");
});

Deno.test("a server that signs: later frames with a bad or missing signature are dropped", async () => {
  const d = await online();
  const bad = await signed(bobKey, advert(BOB, bobKey.publicKey, "bob"));
  await d.frame(bad);
  await d.frame({ ...advert(AL1, al2Key.publicKey, "al"), ts: 1 });
  assert.ok(!d.core.directory.has(BOB) && !d.core.directory.has(AL1));
  assert.equal(d.of("warning").length, 2);
});

Deno.test("same display names are told apart by a fingerprint suffix; a bare name is ambiguous", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(AL1, bobKey.publicKey, "alice")));
  await d.frame(await signed(srvKey, advert(AL2, al2Key.publicKey, "alice", "server-two")));
  const list = d.core.list().filter((p) => p.name === "alice");
  assert.equal(list.length, 2);
  assert.notEqual(list[0].label, list[1].label);
  for (const p of list) {
    assert.match(p.fingerprint, /^[0-9a-f]{4}(:[0-9a-f]{4}){7}$/);
    assert.equal(p.label, `alice#${p.fingerprint.slice(0, 4)}`);
  }
  assert.throws(() => d.core.resolve("alice"), /ambiguous/);
  assert.equal(d.core.resolve(list[1].label).userId, list[1].userId);
  assert.equal(d.core.directory.get(AL2)!.serverId, "server-two");
});

Deno.test("a DM is signed twice (content_sig and frame sig), goes sending → sent → accepted by its ACK", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  const { message } = d.core.tell("bob", "hello bob", d.now);
  assert.equal(message.state, "sending");
  await d.settle();
  const dm = d.sent.at(-1);
  assert.equal(dm.type, "MSG_DIRECT");
  assert.equal(dm.to, BOB);
  assert.ok(await verifySignature(meKey.publicKey, signaturePreimages(dm.payload)[0], dm.sig), "frame sig");
  assert.ok(
    await verifySignature(
      meKey.publicKey,
      dmPreimage({ ciphertext: dm.payload.ciphertext, from: ME, to: BOB, ts: dm.ts }),
      dm.payload.content_sig,
    ),
  );
  assert.equal(new TextDecoder().decode(await bobKey.decrypt(dm.payload.ciphertext)), "hello bob");
  assert.equal(d.core.message(message.id)!.state, "sent");
  const ref = encodeBase64Url(
    new Uint8Array(
      await crypto.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(sortKeys(dm.payload)))),
    ),
  );
  await d.frame(await signed(srvKey, { type: "ACK", from: SRV, to: ME, payload: { msg_ref: ref } }));
  assert.equal(d.core.message(message.id)!.state, "accepted");
  assert.deepEqual(d.of("message").map((e) => e.message.state), ["sending", "sent", "accepted"]);
});

function sortKeys(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.keys(o).sort().map((k) => [k, o[k]]));
}

Deno.test("written while disconnected: stays 'sending', goes out once after the next hello; 'sent' ones are resent", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  d.core.tell("bob", "before the drop", d.now);
  await d.settle();
  const first = d.sent.at(-1);
  d.core.closed(d.now, 1006, "");
  await d.settle();
  assert.equal(d.of("closed").length, 1);
  // bob is no longer in the directory (we do not know who is online), but he is a contact now
  const { message } = d.core.tell("bob", "while offline", d.now);
  await d.settle();
  assert.equal(d.core.message(message.id)!.state, "sending");
  assert.ok(!d.sent.some((f) => f.type === "MSG_DIRECT" && f !== first), "nothing sent while offline");
  d.now += 5000;
  await d.open();
  await d.helloAck(srvKey, SRV);
  assert.equal(d.sent.filter((f) => f.type === "MSG_DIRECT").length, 1, "nothing before the snapshot is in");
  await d.frame(await signed(srvKey, advert(ME, meKey.publicKey, "me")));
  const dms = d.sent.filter((f) => f.type === "MSG_DIRECT");
  assert.equal(
    dms.length,
    3,
    "the first again (identical, so the server's seen cache drops a copy) + the new one",
  );
  assert.deepEqual(dms[1], first);
  assert.equal(d.core.message(message.id)!.state, "sent");
});

Deno.test("contacts: learnt from adverts (event to persist), and a DM to a known offline user goes out", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  const c = d.of("contact");
  assert.equal(c.length, 1);
  assert.deepEqual(
    { ...c[0].contact, fingerprint: "" },
    { userId: BOB, name: "bob", pubkey: bobKey.publicKey, serverId: SRV, fingerprint: "" },
  );
  const later = await online();
  later.core.addContacts([c[0].contact]);
  const { message } = later.core.tell("bob", "you are offline", later.now);
  assert.ok(message.recipientOffline);
  await later.settle();
  assert.equal(later.sent.at(-1).type, "MSG_DIRECT");
  assert.equal(later.sent.at(-1).to, BOB);
});

Deno.test("no key advertised: the DM is refused with what happened", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, undefined, "bob")));
  assert.throws(
    () => d.core.tell("bob", "hi", d.now),
    { message: "no public key known for bob (its server does not advertise keys)" },
  );
});

Deno.test("a DM delivered twice (a resend after a reconnect) is shown once; a plain-text public message is marked", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  const ciphertext = await encryptTo(meKey.publicKey, new TextEncoder().encode("hi me"));
  const ts = d.now - 10;
  const content_sig = await bobKey.sign(dmPreimage({ ciphertext, from: BOB, to: ME, ts }));
  const deliver = await signed(srvKey, {
    type: "USER_DELIVER",
    from: SRV,
    to: ME,
    ts,
    payload: { ciphertext, sender: BOB, sender_pub: bobKey.publicKey, content_sig },
  });
  await d.frame(deliver);
  await d.frame(deliver);
  assert.deepEqual(d.of("dm").map((e) => [e.text, e.verified, e.fromLabel]), [["hi me", true, "bob"]]);

  const plain = encodeBase64Url(new TextEncoder().encode("hello in the clear"));
  await d.frame({
    type: "MSG_PUBLIC_CHANNEL",
    from: BOB,
    to: "public",
    ts,
    payload: {
      ciphertext: plain,
      sender_pub: bobKey.publicKey,
      content_sig: await bobKey.sign(publicPreimage({ ciphertext: plain, from: BOB, ts })),
    },
    sig: "",
  });
  const pub = d.of("public");
  assert.equal(pub.length, 1, JSON.stringify(d.of("warning")));
  assert.equal(pub[0].text, "hello in the clear");
  assert.equal(pub[0].unencrypted, true);
  assert.equal(pub[0].verified, true);
});

Deno.test("a refused file transfer is reported once, however many chunk refusals follow (prose only)", async () => {
  // A server that allows one frame at a time (burst 2: we use half): the chunks wait for their tokens.
  const d = await online({ limits: { rate_per_sec: 10, rate_burst: 2 } });
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  const data = new Uint8Array(FILE_CHUNK_BYTES * 3);
  const fileId = "f-1";
  const { ticket } = d.core.startFile("bob", "big.bin", data, d.now, fileId);
  await d.settle();
  await d.tick(150); // one token: chunk 0
  assert.deepEqual(d.sent.slice(-2).map((f) => f.type), ["FILE_START", "FILE_CHUNK"]);
  for (let i = 0; i < 5; i++) {
    await d.frame(
      await signed(srvKey, {
        type: "ERROR",
        from: SRV,
        to: ME,
        // Another implementation's server: no file_id field, the id is in the prose only.
        payload: {
          code: "UNKNOWN_TYPE",
          detail: `unknown file_id ${fileId} (no FILE_START, or the transfer was dropped)`,
        },
      }),
    );
  }
  assert.equal(d.of("fileRefused").length, 1);
  assert.equal(d.of("error").length, 0, "the chunk refusals are not repeated to the user");
  assert.match(d.core.fileProblem(fileId)!, /unknown file_id/);
  await d.tick(1000);
  assert.equal(d.sent.filter((f) => f.type === "FILE_CHUNK").length, 1, "nothing more is sent");
  assert.equal(d.core.nextDeadline(), undefined, "nothing waits for a token any more");
  const s = d.settled.find((t) => t.ticket === ticket);
  assert.match(s!.error!, /unknown file_id/);
});

Deno.test("a file over the size limit is refused before anything is sent", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  const before = d.sent.length;
  assert.throws(
    () => d.core.startFile("bob", "huge.bin", new Uint8Array(17 * 1024 * 1024), d.now, "f-2"),
    { message: '"huge.bin" is 17 MiB; the limit is 16 MiB' },
  );
  await d.settle();
  assert.equal(d.sent.length, before);
});

Deno.test("the receiver's refusal notice stops the sender's transfer (one event, not shown as a DM)", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(BOB, bobKey.publicKey, "bob")));
  d.core.startFile("bob", "x.bin", new Uint8Array(100), d.now, "f-3");
  await d.settle();
  const text = `[auto] could not accept "x.bin" (file f-3): SHA-256 does not match`;
  const ciphertext = await encryptTo(meKey.publicKey, new TextEncoder().encode(text));
  const ts = d.now;
  const deliver = await signed(srvKey, {
    type: "USER_DELIVER",
    from: SRV,
    to: ME,
    ts,
    payload: {
      ciphertext,
      sender: BOB,
      sender_pub: bobKey.publicKey,
      content_sig: await bobKey.sign(dmPreimage({ ciphertext, from: BOB, to: ME, ts })),
    },
  });
  await d.frame(deliver);
  assert.equal(d.of("dm").length, 0);
  assert.deepEqual(d.of("fileRefused").map((e) => e.reason), ["bob refused it: SHA-256 does not match"]);
});

Deno.test("a public channel key share opens the channel only when a share names us (one `channel` event)", async () => {
  const d = await online();
  // The channel key is an RSA key; here the server's own, wrapped (RSA-OAEP) to our key.
  const wrapped = await d.crypto.run({
    op: "encrypt",
    key: meKey.publicKey,
    data: await srvKey.exportPkcs8(),
  });
  assert.equal(typeof wrapped, "string");
  const share = async (member: string) => {
    const shares = [{ member, wrapped_public_channel_key: wrapped }];
    const content_sig = await srvKey.sign(keySharePreimage(shares, srvKey.publicKey));
    return await signed(srvKey, {
      type: "PUBLIC_CHANNEL_KEY_SHARE",
      from: SRV,
      payload: { shares, creator_pub: srvKey.publicKey, content_sig },
    });
  };
  await d.frame(await share(BOB));
  assert.equal(d.core.channel, null, "a share for someone else is not ours");
  await d.frame(await share(ME));
  assert.deepEqual(d.core.channel, { creatorPub: srvKey.publicKey });
  await d.frame(await share(ME));
  assert.equal(d.of("channel").length, 1);
  assert.deepEqual(d.of("warning"), []);
});

Deno.test("closed with 4001 (a newer session of ours took over): refused for good, no 'closed' to reconnect on", async () => {
  const d = await online();
  d.core.closed(d.now, 4001, "signed in elsewhere");
  await d.settle();
  assert.equal(d.core.phase, "refused");
  assert.equal(d.of("closed").length, 0);
  assert.equal(d.of("refused")[0].code, "TAKEN_OVER");
  const other = await online();
  other.core.closed(other.now, 1006, "");
  await other.settle();
  assert.equal(other.core.phase, "offline");
  assert.equal(other.of("closed").length, 1);
});
