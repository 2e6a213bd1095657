/**
 * The client core's trust rules (PROFILE §16), each attack performed through frames a lying server sends: a
 * contact's key substituted (blocked until accepted, a verified contact a hard stop), self-certifying ids (a
 * deriving key wins, never the reverse), a DM signed by a key that is not the sender's, a replay with edited
 * envelope fields and after a restart (the dedupe comes back from the store), channel keys from a foreign
 * server, our server's key changing, and the safety code.
 */
import assert from "node:assert/strict";
import { KeyChangedError, MAX_SEEN, safetyCode } from "../../lib/client/core.ts";
import type { ClientEvent, Contact, SeenEntry } from "../../lib/client/types.ts";
import { encryptTo } from "../../lib/crypto/rsa.ts";
import { dmPreimage, keySharePreimage } from "../../lib/protocol/preimages.ts";
import { deriveUserId } from "../../lib/protocol/user_id.ts";
import { CoreDriver, type Frame, signed } from "../helpers/core_driver.ts";
import { fixtureKey } from "../helpers/keys.ts";

const ME = "11111111-1111-4111-8111-111111111111";
const ALICE = "33333333-3333-4333-8333-333333333333"; // an older identity: a random id, trusted on first use
const SRV = "server-one";

const [meKey, srvKey, aliceKey, malloryKey, otherSrvKey] = await Promise.all(
  ["user1", "user2", "user3", "user4", "user5"].map(fixtureKey),
);
const DERIVED = deriveUserId(aliceKey.publicKey)!; // alice's self-certifying id

function advert(userId: string, pubkey: string, name: string, serverId = SRV): Frame {
  return {
    type: "USER_ADVERTISE",
    from: serverId,
    to: "*",
    payload: { user_id: userId, server_id: serverId, pubkey, meta: { display_name: name } },
  };
}

async function online(
  opts: { seen?: { entries: SeenEntry[]; floor?: number }; contacts?: Contact[] } = {},
): Promise<CoreDriver> {
  const d = new CoreDriver(meKey, { userId: ME, displayName: "me", seen: opts.seen });
  if (opts.contacts) d.core.addContacts(opts.contacts);
  await d.open();
  await d.helloAck(srvKey, SRV);
  await d.frame(await signed(srvKey, { ...advert(ME, meKey.publicKey, "me") }));
  return d;
}

const dmsSent = (d: CoreDriver) => d.sent.filter((f) => f.type === "MSG_DIRECT");

/** A USER_DELIVER from our server carrying a DM `from` signed with `key` (ts given). */
async function deliver(from: string, key: typeof aliceKey, text: string, ts: number): Promise<Frame> {
  const ciphertext = await encryptTo(meKey.publicKey, new TextEncoder().encode(text));
  const content_sig = await key.sign(dmPreimage({ ciphertext, from, to: ME, ts }));
  return await signed(srvKey, {
    type: "USER_DELIVER",
    from: SRV,
    to: ME,
    ts,
    payload: { ciphertext, sender: from, sender_pub: key.publicKey, content_sig },
  });
}

Deno.test("key substitution: a second key for a pinned id is announced, sending is blocked until the user accepts it", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  const pinnedFp = d.core.directory.get(ALICE)!.fingerprint;
  assert.equal(d.core.list().find((p) => p.userId === ALICE)!.trust, "tofu");
  // Mallory, at another server, says hello with alice's id and her own key; the servers advertise it.
  await d.frame(await signed(srvKey, advert(ALICE, malloryKey.publicKey, "alice", "server-two")));
  const changed = d.of("keyChanged");
  assert.equal(changed.length, 1, "one clear event");
  assert.equal(changed[0].userId, ALICE);
  assert.equal(changed[0].oldFingerprint, pinnedFp);
  assert.notEqual(changed[0].newFingerprint, pinnedFp);
  assert.equal(changed[0].verified, false);
  assert.equal(d.core.list().find((p) => p.userId === ALICE)!.trust, "changed");
  // /tell alice: refused, and nothing was encrypted to either key.
  const before = d.sent.length;
  assert.throws(() => d.core.tell("alice", "the plan", d.now), KeyChangedError);
  assert.throws(() => d.core.startFile("alice", "x.bin", new Uint8Array(10), d.now, "f-1"), KeyChangedError);
  await d.settle();
  assert.equal(d.sent.length, before, "nothing sent");
  assert.equal(d.of("message").length, 0);
  // The pin and the pending change are what the shell persists.
  const stored = d.of("contact").at(-1)!.contact;
  assert.equal(stored.pubkey, aliceKey.publicKey);
  assert.equal(stored.pending?.pubkey, malloryKey.publicKey);
  const info = d.core.trustInfo("alice");
  assert.equal(info.trust, "changed");
  assert.equal(info.pending?.fingerprint, changed[0].newFingerprint);
  assert.notEqual(info.safetyCode, info.pending?.safetyCode);
  // The user decides to accept: the new key is the pin, sending works, to that key.
  d.core.trustKey("alice");
  await d.settle();
  assert.equal(d.of("keyTrusted").length, 1);
  d.core.tell("alice", "after trust", d.now);
  await d.settle();
  const dm = dmsSent(d).at(-1);
  assert.equal(new TextDecoder().decode(await malloryKey.decrypt(dm.payload.ciphertext)), "after trust");
});

Deno.test("a changed key survives a restart as pending (from the stored contact), and the old key coming back ends it", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  await d.frame(await signed(srvKey, advert(ALICE, malloryKey.publicKey, "alice")));
  const stored = d.of("contact").at(-1)!.contact;
  const later = await online({ contacts: [stored] });
  assert.throws(() => later.core.tell("alice", "hi", later.now), KeyChangedError);
  await later.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  assert.equal(later.core.contacts.get(ALICE)!.pending, undefined);
  later.core.tell("alice", "hi", later.now);
  await later.settle();
  const dm = dmsSent(later).at(-1);
  assert.equal(new TextDecoder().decode(await aliceKey.decrypt(dm.payload.ciphertext)), "hi");
});

Deno.test("a verified contact's key change is a hard stop: /trust is refused until the mark is removed", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  d.core.setVerified("alice", true);
  await d.settle();
  assert.equal(d.core.trustInfo("alice").trust, "verified");
  assert.equal(d.of("contact").at(-1)!.contact.verified, true);
  await d.frame(await signed(srvKey, advert(ALICE, malloryKey.publicKey, "alice")));
  assert.equal(d.of("keyChanged")[0].verified, true);
  assert.throws(() => d.core.trustKey("alice"), /hard stop/);
  assert.throws(() => d.core.setVerified("alice", true), /changed/);
  assert.throws(() => d.core.tell("alice", "x", d.now), KeyChangedError);
  d.core.setVerified("alice", false);
  d.core.trustKey("alice");
  assert.equal(d.core.trustInfo("alice").trust, "tofu", "the mark went with the old key");
});

Deno.test("self-certifying ids: a deriving key replaces a non-deriving pin (announced), never the reverse", async () => {
  // Mallory got her key pinned for alice's derived id first (say, while alice was offline).
  const d = await online();
  await d.frame(await signed(srvKey, advert(DERIVED, malloryKey.publicKey, "alice")));
  assert.equal(d.core.contacts.get(DERIVED)!.pubkey, malloryKey.publicKey);
  await d.frame(await signed(srvKey, advert(DERIVED, aliceKey.publicKey, "alice")));
  assert.equal(d.of("keyChanged").length, 0, "no decision asked: the id proves the key");
  const replaced = d.of("keyReplaced");
  assert.equal(replaced.length, 1);
  assert.match(replaced[0].detail, /resolved conflict/);
  assert.equal(d.core.contacts.get(DERIVED)!.pubkey, aliceKey.publicKey);
  assert.equal(d.core.trustInfo(DERIVED).trust, "derived");
  assert.equal(d.core.list().find((p) => p.userId === DERIVED)!.trust, "derived");
  // And Mallory can never take it back: her key is ignored, sending still goes to alice.
  await d.frame(await signed(srvKey, advert(DERIVED, malloryKey.publicKey, "alice")));
  assert.equal(d.of("keyRejected").length, 1);
  assert.equal(d.core.contacts.get(DERIVED)!.pubkey, aliceKey.publicKey);
  assert.equal(d.core.contacts.get(DERIVED)!.pending, undefined);
  d.core.tell(DERIVED, "only alice reads this", d.now);
  await d.settle();
  const dm = dmsSent(d).at(-1);
  assert.equal(
    new TextDecoder().decode(await aliceKey.decrypt(dm.payload.ciphertext)),
    "only alice reads this",
  );
});

Deno.test("a DM signed by a key that is not the sender's pinned key is UNVERIFIED; a DM from a derived id pins it", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  await d.frame(await deliver(ALICE, malloryKey, "it is me, alice", d.now - 5));
  const [forged] = d.of("dm");
  assert.equal(forged.verified, false);
  assert.match(forged.warning!, /not the one pinned for alice/);
  await d.frame(await deliver(ALICE, aliceKey, "the real one", d.now - 4));
  assert.equal(d.of("dm")[1].verified, true);
  // Someone never seen, whose key derives the id: verified by construction, and pinned.
  await d.frame(await deliver(DERIVED, aliceKey, "hello from a derived id", d.now - 3));
  assert.equal(d.of("dm")[2].verified, true);
  assert.equal(d.of("dm")[2].warning, undefined);
  assert.equal(d.core.contacts.get(DERIVED)!.pubkey, aliceKey.publicKey);
});

Deno.test("replays: a copy with an edited envelope ts is not shown again, nor after a restart with the stored dedupe", async () => {
  const d = await online();
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  const ts = d.now - 10;
  const original = await deliver(ALICE, aliceKey, "pay bob 10", ts);
  await d.frame(original);
  const edited = await signed(srvKey, { ...original, ts: ts + 1, sig: undefined });
  await d.frame(edited);
  await d.frame(original);
  assert.deepEqual(d.of("dm").map((e) => [e.text, e.verified]), [["pay bob 10", true]]);
  const seen = d.of("seen").map((e) => e.entry);
  assert.equal(seen.length, 1);
  // The client restarts: its shell hands back what it stored.
  const later = await online({ seen: { entries: seen }, contacts: d.of("contact").map((e) => e.contact) });
  await later.frame(original);
  await later.frame(edited);
  assert.equal(later.of("dm").length, 0, JSON.stringify(later.events));
  // A new message is still shown.
  await later.frame(await deliver(ALICE, aliceKey, "new one", later.now));
  assert.deepEqual(later.of("dm").map((e) => e.text), ["new one"]);
});

Deno.test("replays older than everything the store remembers are dropped and said; a forged future date cannot raise the floor", async () => {
  const d = await online({ seen: { entries: [], floor: 1_700_000_000_000 - 60_000 } });
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  await d.frame(await deliver(ALICE, aliceKey, "ancient", 1_700_000_000_000 - 120_000));
  assert.equal(d.of("dm").length, 0);
  assert.match(d.of("warning").at(-1)!.detail, /older than every message this client still remembers/);
  await d.frame(await deliver(ALICE, aliceKey, "from the future", d.now + 10 * 365 * 86_400_000));
  assert.equal(d.of("dm").length, 1);
  assert.ok(d.of("seen").at(-1)!.entry.ts <= d.now, "stored no later than its arrival");
  assert.equal(MAX_SEEN, 10_000);
});

Deno.test("channel keys: a share from another server is refused, one from ours is pinned, and a new creator key is announced", async () => {
  const d = await online();
  const share = async (serverKey: typeof srvKey, from: string, channelKey: typeof srvKey) => {
    const wrapped = await d.crypto.run({
      op: "encrypt",
      key: meKey.publicKey,
      data: await channelKey.exportPkcs8(),
    });
    const shares = [{ member: ME, wrapped_public_channel_key: wrapped }];
    const content_sig = await channelKey.sign(keySharePreimage(shares, channelKey.publicKey));
    return await signed(serverKey, {
      type: "PUBLIC_CHANNEL_KEY_SHARE",
      from,
      payload: { shares, creator_pub: channelKey.publicKey, content_sig },
    });
  };
  // A federated server's share (self-signed, its own channel key), relayed unchanged by our server.
  await d.frame(await share(otherSrvKey, "server-two", malloryKey));
  assert.equal(d.core.channel, null, "not switched");
  assert.match(d.of("warning").at(-1)!.detail, /not signed by our server/);
  // The same, claiming our server's id but signed by another key.
  await d.frame(await share(otherSrvKey, SRV, malloryKey));
  assert.equal(d.core.channel, null);
  // Ours: taken, and its creator key pinned with the server's key.
  await d.frame(await share(srvKey, SRV, aliceKey));
  assert.deepEqual(d.core.channel, { creatorPub: aliceKey.publicKey });
  assert.equal(d.core.serverPin?.channelCreatorPub, aliceKey.publicKey);
  assert.equal(d.of("channelKeyChanged").length, 0);
  // Our server hands out another channel key: taken (our server holds the channel) but announced.
  await d.frame(await share(srvKey, SRV, malloryKey));
  assert.equal(d.of("channelKeyChanged").length, 1);
  assert.equal(d.of("serverPin").at(-1)!.pin.channelCreatorPub, malloryKey.publicKey);
});

Deno.test("our server's key is pinned at first contact; a different key later is announced and channel keys are refused until accepted", async () => {
  const first = await online();
  const pin = first.of("serverPin")[0].pin;
  assert.equal(pin.pubkey, srvKey.publicKey);
  const d = new CoreDriver(meKey, { userId: ME, serverPin: pin });
  await d.open();
  // Someone else answers at that address, signing with its own key.
  await d.helloAck(otherSrvKey, SRV);
  const changed = d.of("serverKeyChanged");
  assert.equal(changed.length, 1);
  assert.equal(changed[0].oldFingerprint, pin.fingerprint);
  assert.equal(d.core.serverKeyPending, otherSrvKey.publicKey);
  const wrapped = await d.crypto.run({
    op: "encrypt",
    key: meKey.publicKey,
    data: await malloryKey.exportPkcs8(),
  });
  const shares = [{ member: ME, wrapped_public_channel_key: wrapped }];
  await d.frame(
    await signed(otherSrvKey, {
      type: "PUBLIC_CHANNEL_KEY_SHARE",
      from: SRV,
      payload: {
        shares,
        creator_pub: malloryKey.publicKey,
        content_sig: await malloryKey.sign(keySharePreimage(shares, malloryKey.publicKey)),
      },
    }),
  );
  assert.equal(d.core.channel, null);
  assert.match(d.of("warning").at(-1)!.detail, /not the pinned one/);
  d.core.trustServerKey();
  await d.settle();
  assert.equal(d.of("serverPin").at(-1)!.pin.pubkey, otherSrvKey.publicKey);
});

Deno.test("the safety code: 12 groups of 5 digits, the same on both sides, different for another key", async () => {
  const code = safetyCode(meKey.publicKey, aliceKey.publicKey);
  assert.match(code, /^\d{5}( \d{5}){11}$/);
  assert.equal(safetyCode(aliceKey.publicKey, meKey.publicKey), code);
  assert.notEqual(safetyCode(meKey.publicKey, malloryKey.publicKey), code);
  // Alice's own client shows the same code for her conversation with me.
  const d = await online();
  await d.frame(await signed(srvKey, advert(ALICE, aliceKey.publicKey, "alice")));
  const a = new CoreDriver(aliceKey, { userId: ALICE });
  a.core.addContacts([{ userId: ME, name: "me", pubkey: meKey.publicKey, fingerprint: "", serverId: SRV }]);
  assert.equal(a.core.trustInfo(ME).safetyCode, d.core.trustInfo("alice").safetyCode);
  assert.equal(a.core.trustInfo(ME).fingerprint, d.core.fingerprint);
  const events: ClientEvent[] = d.events;
  assert.ok(events.length > 0);
});
