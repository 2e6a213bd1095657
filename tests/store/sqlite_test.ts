import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { SCHEMA_VERSION, SchemaTooNew, Store } from "../../lib/store/sqlite.ts";

const U = "a11ce000-0000-4000-8000-000000000001";

function tmpDb(): string {
  return join(Deno.makeTempDirSync({ prefix: "socp-store-" }), "socp.db");
}

Deno.test("Store creates the standard's tables with their columns, in WAL mode", () => {
  const path = tmpDb();
  Store.open(path).close();
  const db = new DatabaseSync(path);
  const cols = (t: string) =>
    (db.prepare(`PRAGMA table_info(${t})`).all() as { name: string }[]).map((c) => c.name);
  for (const c of ["user_id", "pubkey", "privkey_store", "pake_password", "meta", "version"]) {
    assert.ok(cols("users").includes(c), c);
  }
  assert.deepEqual(cols("groups"), ["group_id", "creator_id", "created_at", "meta", "version"]);
  assert.deepEqual(cols("group_members"), ["group_id", "member_id", "role", "wrapped_key", "added_at"]);
  assert.equal((db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode, "wal");
  db.close();
});

Deno.test("upsertUser() and listUsers() keep keys as sent and meta as JSON; the file survives reopening", () => {
  const path = tmpDb();
  const s = Store.open(path);
  s.upsertUser({
    userId: U,
    pubkey: "PEM-TEXT-AS-SENT",
    encPubkey: "ENC",
    meta: { display_name: "Al" },
    version: 1,
  });
  s.upsertUser({
    userId: U,
    pubkey: "PEM-TEXT-AS-SENT",
    encPubkey: "ENC",
    meta: { display_name: "Alice" },
    version: 2,
  });
  s.close();
  const again = Store.open(path);
  assert.deepEqual(again.listUsers(), [{
    userId: U,
    pubkey: "PEM-TEXT-AS-SENT",
    encPubkey: "ENC",
    meta: { display_name: "Alice" },
    version: 2,
  }]);
  again.close();
});

Deno.test("a version-1 database is migrated in place and keeps its users", () => {
  const path = tmpDb();
  const db = new DatabaseSync(path);
  // The version-1 schema, as the first release wrote it.
  db.exec(`CREATE TABLE users(user_id TEXT PRIMARY KEY, pubkey TEXT NOT NULL, privkey_store TEXT NOT NULL,
    pake_password TEXT NOT NULL, meta TEXT, version INT NOT NULL);
    CREATE TABLE groups(group_id TEXT PRIMARY KEY, creator_id TEXT NOT NULL, created_at INT, meta TEXT, version INT NOT NULL);
    CREATE TABLE group_members(group_id TEXT NOT NULL, member_id TEXT NOT NULL, role TEXT, wrapped_key TEXT NOT NULL,
      added_at INT, PRIMARY KEY (group_id, member_id));
    CREATE TABLE identity(id INTEGER PRIMARY KEY CHECK (id = 1), server_id TEXT NOT NULL, pubkey TEXT NOT NULL,
      sealed_key TEXT NOT NULL, created_at INT NOT NULL);
    INSERT INTO users VALUES ('${U}', 'KEY', '', '', NULL, 1);
    PRAGMA user_version = 1;`);
  db.close();
  const s = Store.open(path);
  assert.equal(s.schemaVersion(), SCHEMA_VERSION);
  assert.deepEqual(s.listUsers(), [{ userId: U, pubkey: "KEY", encPubkey: "KEY", meta: null, version: 1 }]);
  s.close();
});

Deno.test("a database from a newer version is refused, not damaged", () => {
  const path = tmpDb();
  const db = new DatabaseSync(path);
  db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 5}`);
  db.close();
  assert.throws(() => Store.open(path), SchemaTooNew);
});

Deno.test("identity round-trips", () => {
  const s = Store.open(":memory:");
  assert.equal(s.getIdentity(), null);
  const sealed = {
    kdf: "PBKDF2-SHA256" as const,
    iterations: 1,
    salt: "s",
    cipher: "AES-256-GCM" as const,
    iv: "i",
    data: "d",
  };
  s.setIdentity({ serverId: "sid", pubkey: "pk", sealed }, 1);
  assert.deepEqual(s.getIdentity(), { serverId: "sid", pubkey: "pk", sealed });
  s.close();
});

Deno.test("a user written by a process that is then SIGKILLed is still there", async () => {
  const path = tmpDb();
  const code = `
    import { Store } from ${JSON.stringify(new URL("../../lib/store/sqlite.ts", import.meta.url).href)};
    const s = Store.open(${JSON.stringify(path)});
    s.upsertUser({ userId: "${U}", pubkey: "K", encPubkey: "K", meta: null, version: 1 });
    console.log("written");
    setInterval(() => {}, 1000);`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.match(new TextDecoder().decode(value), /written/);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  const s = Store.open(path);
  assert.equal(s.listUsers()[0]?.userId, U);
  s.close();
});

Deno.test("the offline queue keeps order, drops expired rows, and deletes delivered ones", () => {
  const s = Store.open(":memory:");
  s.enqueue(U, { n: 1 }, 100);
  s.enqueue(U, { n: 2 }, 200);
  s.enqueue("other", { n: 9 }, 200);
  s.enqueue(U, { n: 3 }, 300);
  const rows = s.storedFrames("queue", s.queuedIds(U, 150)); // the row from t=100 has expired
  assert.deepEqual(rows.map((r) => r.frame), [{ n: 2 }, { n: 3 }]);
  s.dequeue(rows.map((r) => r.id));
  assert.deepEqual(s.queuedIds(U, 0), []);
  assert.deepEqual(s.load().queued, [["other", 1]]);
  s.close();
});

Deno.test("stored rows are listed by id and read a page at a time (rows gone are left out)", () => {
  const s = Store.open(":memory:");
  s.enqueue(U, { n: 1 }, 100);
  s.enqueue(U, { n: 2 }, 200);
  s.enqueue(U, { n: 3 }, 300);
  s.addOutbox("S2", "r", { o: 1 }, 50);
  const ids = s.queuedIds(U, 150); // the row from t=100 has expired (and is deleted)
  assert.equal(ids.length, 2);
  assert.deepEqual(s.storedFrames("queue", [ids[1], ids[0]]).map((r) => r.frame), [{ n: 2 }, { n: 3 }]);
  s.dequeue([ids[0]]);
  assert.deepEqual(s.storedFrames("queue", ids).map((r) => r.frame), [{ n: 3 }]);
  const out = s.outboxIds("S2", 0);
  assert.deepEqual(s.storedFrames("outbox", out).map((r) => r.frame), [{ o: 1 }]);
  assert.deepEqual(s.storedFrames("queue", out), [], "an outbox id is not a queue row");
  assert.deepEqual(s.outboxIds("S2", 60), []);
  s.close();
});

Deno.test("outbox rows stay until their ref is ACKed; accepted refs and homes survive a reopen", () => {
  const path = tmpDb();
  const s = Store.open(path);
  s.addOutbox("S2", "ref-a", { a: 1 }, 1);
  s.addOutbox("S2", "ref-b", { b: 1 }, 2);
  s.ackOutbox("S2", "ref-a");
  assert.deepEqual(s.storedFrames("outbox", s.outboxIds("S2", 0)).map((r) => r.frame), [{ b: 1 }]);
  s.acceptRef("ref-x", Date.now());
  s.setHome(U, "S2");
  s.close();
  const again = Store.open(path);
  const loaded = again.load();
  assert.deepEqual(loaded.outbox, [["S2", 1]]);
  assert.deepEqual(loaded.acceptedRefs.map(([r]) => r), ["ref-x"]);
  assert.deepEqual(loaded.homes, [[U, "S2"]]);
  again.close();
});

Deno.test("the public channel is kept in groups / group_members as the standard names them", () => {
  const path = tmpDb();
  const s = Store.open(path);
  const sealed = {
    kdf: "PBKDF2-SHA256" as const,
    iterations: 1,
    salt: "s",
    cipher: "AES-256-GCM" as const,
    iv: "i",
    data: "d",
  };
  s.setChannelKey("CHANNEL-PUB", sealed);
  s.setChannel(3, "CHANNEL-PUB", 5);
  s.addMember(U, "WRAP", 6);
  s.addMember(U, "", 7); // an ADD without a wrap does not erase the wrap
  s.close();
  const db = new DatabaseSync(path);
  assert.deepEqual({ ...db.prepare("SELECT group_id, creator_id, version FROM groups").get() }, {
    group_id: "public",
    creator_id: "system",
    version: 3,
  });
  assert.deepEqual({ ...db.prepare("SELECT member_id, role, wrapped_key FROM group_members").get() }, {
    member_id: U,
    role: "member",
    wrapped_key: "WRAP",
  });
  db.close();
  const again = Store.open(path);
  assert.deepEqual(again.load().channel, { version: 3, creatorPub: "CHANNEL-PUB", members: [U] });
  again.close();
});

Deno.test("seen keys (PROFILE §16) survive a reopen until they expire, and expired ones are pruned", () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-seen-" });
  const path = `${dir}/socp.db`;
  const now = Date.now();
  const s = Store.open(path);
  s.addSeen([["live", now + 60_000], ["gone", now - 1]]);
  s.close();
  const again = Store.open(path);
  assert.deepEqual(again.load(now).seen, [["live", now + 60_000]]);
  const many: [string, number][] = Array.from({ length: 4096 }, (_, i) => [`old-${i}`, now - 1]);
  again.addSeen(many, now); // the 4096th write prunes what expired
  assert.equal(again.seenCount(), 1);
  again.close();
  Deno.removeSync(dir, { recursive: true });
});
