/** The terminal's trust store on real files: contacts with pins and marks, server pins, the bounded seen file. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { FileTrustStore, parseSeen, seenPath } from "../../lib/cli/contacts.ts";
import { MAX_SEEN } from "../../lib/client/trust.ts";
import type { Contact } from "../../lib/client/types.ts";
import { fixtureKey } from "../helpers/keys.ts";

const [aliceKey, malloryKey] = await Promise.all(["user2", "user3"].map(fixtureKey));

Deno.test("contacts (verified mark, pending change) and server pins come back from the files", async () => {
  const dir = Deno.makeTempDirSync();
  const path = join(dir, "contacts", "bob.json");
  const a = new FileTrustStore(path);
  assert.deepEqual(await a.load("ws://x"), { contacts: [], serverPin: undefined, seen: [], seenFloor: 0 });
  const alice: Contact = {
    userId: "a-1",
    name: "alice",
    pubkey: aliceKey.publicKey,
    fingerprint: "f",
    serverId: "s",
    verified: true,
    pending: { pubkey: malloryKey.publicKey, fingerprint: "g", serverId: "s2", name: "alice" },
  };
  await a.saveContact(alice);
  await a.saveServerPin("ws://x", { serverId: "s", pubkey: aliceKey.publicKey, fingerprint: "f" });
  await a.addSeen({ key: "0123456789abcdef0123456789abcdef", ts: 5, verified: true });
  assert.equal((Deno.statSync(path).mode ?? 0) & 0o777, 0o600);
  assert.equal((Deno.statSync(seenPath(path)).mode ?? 0) & 0o777, 0o600);
  const b = await new FileTrustStore(path).load("ws://x");
  assert.deepEqual(b.contacts, [alice]);
  assert.equal(b.serverPin?.pubkey, aliceKey.publicKey);
  assert.deepEqual(b.seen, [{ key: "0123456789abcdef0123456789abcdef", ts: 5, verified: true }]);
  assert.equal(
    (await new FileTrustStore(path).load("ws://other")).serverPin,
    undefined,
    "pins are per address",
  );
});

Deno.test("the seen file stays bounded: compacted to the newest entries, the floor keeps the newest forgotten date", async () => {
  const dir = Deno.makeTempDirSync();
  const path = join(dir, "c.json");
  const s = new FileTrustStore(path);
  await s.load("ws://x");
  const key = (i: number) => i.toString(16).padStart(32, "0");
  const total = 2 * MAX_SEEN + 1;
  const t0 = performance.now();
  for (let i = 0; i < total; i++) await s.addSeen({ key: key(i), ts: 1000 + i, verified: i % 2 === 0 });
  const ms = performance.now() - t0;
  const text = Deno.readTextFileSync(seenPath(path));
  const lines = text.trimEnd().split("\n");
  assert.ok(lines.length <= MAX_SEEN + 1, `${lines.length} lines`);
  const parsed = parseSeen(text);
  assert.equal(parsed.entries.length, MAX_SEEN);
  assert.equal(parsed.entries.at(-1)!.key, key(total - 1));
  // Dropped: entries 0 .. total-MAX_SEEN-1; the newest verified (even i) among them sets the floor.
  const lastDropped = total - MAX_SEEN - 1;
  const newestVerifiedDropped = lastDropped % 2 === 0 ? lastDropped : lastDropped - 1;
  assert.equal(parsed.floor, 1000 + newestVerifiedDropped);
  const back = await new FileTrustStore(path).load("ws://x");
  assert.equal(back.seen.length, MAX_SEEN);
  assert.equal(back.seenFloor, parsed.floor);
  console.log(`  ${total} entries appended in ${Math.round(ms)} ms; file ${text.length} bytes`);
});

Deno.test("a damaged seen file or contacts file loads what it can, never throws", async () => {
  const dir = Deno.makeTempDirSync();
  const path = join(dir, "c.json");
  Deno.writeTextFileSync(path, "{not json");
  Deno.writeTextFileSync(seenPath(path), "garbage\nfloor x\n0123456789abcdef0123456789abcdef 7 v\nzz 1 v\n");
  const r = await new FileTrustStore(path).load("ws://x");
  assert.deepEqual(r.contacts, []);
  assert.deepEqual(r.seen, [{ key: "0123456789abcdef0123456789abcdef", ts: 7, verified: true }]);
});

Deno.test("a burst of contact changes (a directory snapshot) is folded into a few writes of the file, none lost", async () => {
  const dir = Deno.makeTempDirSync();
  const path = join(dir, "c.json");
  const s = new FileTrustStore(path);
  await s.load("ws://x");
  const realRename = Deno.rename;
  let writes = 0;
  Deno.rename = (from: string | URL, to: string | URL) => (writes++, realRename(from, to));
  try {
    const all: Promise<void>[] = [];
    for (let i = 0; i < 500; i++) {
      all.push(s.saveContact({
        userId: `u-${i}`,
        name: `user ${i}`,
        pubkey: aliceKey.publicKey,
        fingerprint: "",
        serverId: "s",
      }));
    }
    await Promise.all(all);
  } finally {
    Deno.rename = realRename;
  }
  assert.ok(writes <= 2, `${writes} writes for 500 changes`);
  const back = await new FileTrustStore(path).load("ws://x");
  assert.equal(back.contacts.length, 500);
  console.log(`  500 contact changes: ${writes} file writes`);
});
