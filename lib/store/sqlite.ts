/**
 * The SQLite adapter on `node:sqlite`: the schema of migrations.ts applied in order (PRAGMA user_version), WAL
 * mode, one small function per query.
 *
 * @example
 * ```ts
 * const store = Store.open("./socp-data/socp.db");
 * const userId = crypto.randomUUID();
 * const pubkey = "base64url DER SPKI of the user's key";
 * store.upsertUser({ userId, pubkey, encPubkey: pubkey, meta: null, version: 1 });
 * store.close();
 * ```
 * @module
 */
import { closeSync, openSync } from "node:fs";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Loaded, ServerRecord, UserRecord } from "../core/types.ts";
import type { SealedKey } from "../crypto/keyfile.ts";
import { MIGRATIONS } from "./migrations.ts";

/** The schema version this code writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** The node's identity row. */
export interface IdentityRow {
  serverId: string;
  pubkey: string;
  sealed: SealedKey;
}

/** Thrown when a database file is newer than this program. */
export class SchemaTooNew extends Error {}

/** Create `path` empty with mode 0600 (owner only) unless it exists. */
function createPrivate(path: string): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (e) {
    if ((e as { code?: string }).code !== "EEXIST") throw e;
  }
}

/** A SQLite-backed store. Every method is synchronous; writes are committed when they return. */
export class Store {
  private constructor(private readonly db: DatabaseSync) {}

  /** Statements by their SQL text, prepared once (every query here is one of a few dozen fixed texts). */
  private readonly statements = new Map<string, StatementSync>();
  private sql(text: string): StatementSync {
    let st = this.statements.get(text);
    if (!st) this.statements.set(text, st = this.db.prepare(text));
    return st;
  }

  /**
   * Open (creating and migrating as needed) the database at `path` (":memory:" for tests). A new file is created
   * with mode 0600 before SQLite opens it; SQLite gives its `-wal` and `-shm` files the database file's mode.
   */
  static open(path: string): Store {
    if (path !== ":memory:") createPrivate(path);
    const db = new DatabaseSync(path);
    db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    );
    const store = new Store(db);
    store.migrate();
    return store;
  }

  /** The file's schema version. */
  schemaVersion(): number {
    return Number((this.sql("PRAGMA user_version").get() as { user_version: number }).user_version);
  }

  private migrate(): void {
    const current = this.schemaVersion();
    if (current > SCHEMA_VERSION) {
      throw new SchemaTooNew(
        `database schema version ${current} is newer than this program understands (${SCHEMA_VERSION}); upgrade socp`,
      );
    }
    for (let v = current; v < SCHEMA_VERSION; v++) {
      this.tx(() => {
        this.db.exec(MIGRATIONS[v]);
        this.db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  /** Run `fn` in one transaction (inside another one, `fn` is part of it). */
  tx<T>(fn: () => T): T {
    if (this.db.isTransaction) return fn();
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const r = fn();
      this.db.exec("COMMIT");
      return r;
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  /** Insert or update a user binding. The server never holds users' private keys or passwords. */
  upsertUser(u: UserRecord, now = 0): void {
    this.sql(
      `INSERT INTO users(user_id, pubkey, enc_pubkey, privkey_store, pake_password, meta, version, created_at)
       VALUES (?, ?, ?, '', '', ?, ?, ?)
       ON CONFLICT(user_id) DO UPDATE SET pubkey = excluded.pubkey, enc_pubkey = excluded.enc_pubkey,
         meta = excluded.meta, version = excluded.version`,
    ).run(u.userId, u.pubkey, u.encPubkey, u.meta ? JSON.stringify(u.meta) : null, u.version, now);
  }

  /** Every bound user. */
  listUsers(): UserRecord[] {
    const rows = this.sql("SELECT user_id, pubkey, enc_pubkey, meta, version FROM users").all() as {
      user_id: string;
      pubkey: string;
      enc_pubkey: string | null;
      meta: string | null;
      version: number;
    }[];
    return rows.map((r) => ({
      userId: r.user_id,
      pubkey: r.pubkey,
      encPubkey: r.enc_pubkey ?? r.pubkey,
      meta: parseMeta(r.meta),
      version: Number(r.version),
    }));
  }

  /** The stored identity, if any. */
  getIdentity(): IdentityRow | null {
    const r = this.sql("SELECT server_id, pubkey, sealed_key FROM identity WHERE id = 1").get() as
      | { server_id: string; pubkey: string; sealed_key: string }
      | undefined;
    return r ? { serverId: r.server_id, pubkey: r.pubkey, sealed: JSON.parse(r.sealed_key) } : null;
  }

  /** Store the identity (server id, public key, sealed private key). */
  setIdentity(id: IdentityRow, now: number): void {
    this.sql(
      `INSERT INTO identity(id, server_id, pubkey, sealed_key, created_at) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT(id) DO UPDATE SET server_id = excluded.server_id, pubkey = excluded.pubkey,
         sealed_key = excluded.sealed_key`,
    ).run(id.serverId, id.pubkey, JSON.stringify(id.sealed), now);
  }

  /** Adopt a server id assigned by an introducer (permanent). */
  setServerId(serverId: string): void {
    this.sql("UPDATE identity SET server_id = ? WHERE id = 1").run(serverId);
  }

  /**
   * Pin a server's key to its id, or update its address. The key of an existing pin is never replaced here:
   * the reducer refuses a known id with another key before it gets this far.
   */
  pinServer(s: ServerRecord, now = 0): void {
    this.sql(
      `INSERT INTO servers(server_id, pubkey, host, port, pinned_at, no_dial) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(server_id) DO UPDATE SET host = excluded.host, port = excluded.port, no_dial = excluded.no_dial`,
    ).run(s.serverId, s.pubkey, s.host, s.port, now, s.noDial ? 1 : 0);
  }

  /** Every pinned server. */
  listServers(): ServerRecord[] {
    const rows = this.sql("SELECT server_id, pubkey, host, port, no_dial FROM servers").all() as {
      server_id: string;
      pubkey: string;
      host: string;
      port: number;
      no_dial: number;
    }[];
    return rows.map((r) => ({
      serverId: r.server_id,
      pubkey: r.pubkey,
      host: r.host,
      port: Number(r.port),
      ...(Number(r.no_dial) ? { noDial: true as const } : {}),
    }));
  }

  /** Pin a user's key (PROFILE §16); the reducer decides when a pin may be replaced. */
  pinUser(userId: string, pubkey: string, now: number): void {
    this.sql(
      `INSERT INTO user_pins(user_id, pubkey, pinned_at) VALUES (?, ?, ?)
       ON CONFLICT(user_id) DO UPDATE SET pubkey = excluded.pubkey, pinned_at = excluded.pinned_at`,
    ).run(userId, pubkey, now);
  }

  /** Keep seen-cache keys until their expiry, in one transaction (PROFILE §16 replays across restarts). */
  addSeen(entries: [string, number][], now = Date.now()): void {
    if (entries.length === 0) return;
    const ins = this.sql(
      "INSERT INTO seen(key, exp) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET exp = MAX(exp, excluded.exp)",
    );
    this.seenWrites += entries.length;
    const prune = this.seenWrites >= 4096;
    if (prune) this.seenWrites = 0;
    this.tx(() => {
      entries.forEach(([k, exp]) => ins.run(k, exp));
      // Expired keys go now and then, so a node that runs for months keeps only a window's worth.
      if (prune) this.sql("DELETE FROM seen WHERE exp <= ?").run(now);
    });
  }

  /** Seen keys written since the last pruning of expired ones. */
  private seenWrites = 0;

  /** How many seen keys are kept on disk (for tests and /metrics). */
  seenCount(): number {
    return Number((this.sql("SELECT COUNT(*) AS n FROM seen").get() as { n: number }).n);
  }

  /** Queue a frame for an offline user (committed when this returns). */
  enqueue(userId: string, frame: unknown, now: number): void {
    this.sql("INSERT INTO queue(user_id, frame, queued_at) VALUES (?, ?, ?)").run(
      userId,
      JSON.stringify(frame),
      now,
    );
  }

  /**
   * Ids of a user's queued frames, oldest first, dropping those older than `notBefore` (the frames themselves
   * are read a page at a time with {@linkcode Store.storedFrames}, so a full queue is never in memory at once).
   */
  queuedIds(userId: string, notBefore: number): number[] {
    return this.storedIds("queue", "user_id", userId, notBefore);
  }

  /** Ids of the frames kept for a server, oldest first, dropping those older than `notBefore`. */
  outboxIds(serverId: string, notBefore: number): number[] {
    return this.storedIds("outbox", "server_id", serverId, notBefore);
  }

  private storedIds(table: "queue" | "outbox", col: "user_id" | "server_id", key: string, notBefore: number) {
    this.sql(`DELETE FROM ${table} WHERE ${col} = ? AND queued_at < ?`).run(key, notBefore);
    const rows = this.sql(`SELECT id FROM ${table} WHERE ${col} = ? ORDER BY id`).all(key) as {
      id: number;
    }[];
    return rows.map((r) => Number(r.id));
  }

  /** The frames of these queue or outbox rows, in id order (rows no longer there are left out). */
  storedFrames(table: "queue" | "outbox", ids: number[]): { id: number; frame: unknown }[] {
    const get = this.sql(`SELECT frame FROM ${table === "queue" ? "queue" : "outbox"} WHERE id = ?`);
    const out: { id: number; frame: unknown }[] = [];
    for (const id of [...ids].sort((a, b) => a - b)) {
      const r = get.get(id) as { frame: string } | undefined;
      if (r) out.push({ id, frame: JSON.parse(r.frame) });
    }
    return out;
  }

  /** Delete delivered queue rows. */
  dequeue(ids: number[]): void {
    const del = this.sql("DELETE FROM queue WHERE id = ?");
    this.tx(() => ids.forEach((id) => del.run(id)));
  }

  /** Keep a frame for a server that is unreachable now. */
  addOutbox(serverId: string, ref: string, frame: unknown, now: number): void {
    this.sql("INSERT INTO outbox(server_id, ref, frame, queued_at) VALUES (?, ?, ?, ?)").run(
      serverId,
      ref,
      JSON.stringify(frame),
      now,
    );
  }

  /** The server confirmed the frame with this msg_ref (its ACK): forget it. */
  ackOutbox(serverId: string, ref: string): void {
    this.sql("DELETE FROM outbox WHERE server_id = ? AND ref = ?").run(serverId, ref);
  }

  /** Forget every frame kept for a server (handed to a server that does not ACK, PROFILE §15). */
  clearOutbox(serverId: string): void {
    this.sql("DELETE FROM outbox WHERE server_id = ?").run(serverId);
  }

  /** Delete outbox rows by id (sent to a server that does not ACK). */
  deleteOutbox(ids: number[]): void {
    const del = this.sql("DELETE FROM outbox WHERE id = ?");
    this.tx(() => ids.forEach((id) => del.run(id)));
  }

  /** Remember that an ack-requested frame was taken (dedupe across restarts); `load()` forgets entries after 30 days. */
  acceptRef(ref: string, now: number): void {
    this.sql("INSERT OR IGNORE INTO accepted_refs(ref, at) VALUES (?, ?)").run(ref, now);
  }

  /** Remember a user's last home server. */
  setHome(userId: string, serverId: string): void {
    this.sql(
      "INSERT INTO homes(user_id, server_id) VALUES (?, ?) ON CONFLICT(user_id) DO UPDATE SET server_id = excluded.server_id",
    )
      .run(userId, serverId);
  }

  /** Record the public channel (the `groups` row "public", creator "system"; the channel key in `meta`). */
  setChannel(version: number, creatorPub: string, now: number): void {
    this.sql(
      `INSERT INTO groups(group_id, creator_id, created_at, meta, version) VALUES ('public', 'system', ?, ?, ?)
       ON CONFLICT(group_id) DO UPDATE SET meta = excluded.meta, version = excluded.version`,
    ).run(now, JSON.stringify({ title: "public", creator_pub: creatorPub }), version);
  }

  /** Add or update a channel member (role "member"; the wrap of the channel key for them, when known). */
  addMember(memberId: string, wrappedKey: string, now: number): void {
    this.sql(
      `INSERT INTO group_members(group_id, member_id, role, wrapped_key, added_at) VALUES ('public', ?, 'member', ?, ?)
       ON CONFLICT(group_id, member_id) DO UPDATE SET wrapped_key = CASE WHEN excluded.wrapped_key = ''
         THEN group_members.wrapped_key ELSE excluded.wrapped_key END`,
    ).run(memberId, wrappedKey, now);
  }

  /** Store the channel's private key, sealed. */
  setChannelKey(creatorPub: string, sealed: SealedKey): void {
    this.sql(
      `INSERT INTO channel_key(id, creator_pub, sealed_key) VALUES (1, ?, ?)
       ON CONFLICT(id) DO UPDATE SET creator_pub = excluded.creator_pub, sealed_key = excluded.sealed_key`,
    ).run(creatorPub, JSON.stringify(sealed));
    this.sql("DELETE FROM group_members WHERE group_id = 'public'").run();
  }

  /** The sealed channel key, if this node holds one. */
  getChannelKey(): { creatorPub: string; sealed: SealedKey } | null {
    const r = this.sql("SELECT creator_pub, sealed_key FROM channel_key WHERE id = 1").get() as
      | { creator_pub: string; sealed_key: string }
      | undefined;
    return r ? { creatorPub: r.creator_pub, sealed: JSON.parse(r.sealed_key) } : null;
  }

  /** Everything the reducer needs at start. */
  load(now = Date.now()): Loaded {
    this.sql("DELETE FROM accepted_refs WHERE at < ?").run(now - 30 * 86400_000);
    this.sql("DELETE FROM seen WHERE exp <= ?").run(now);
    const count = (sql: string) =>
      (this.sql(sql).all() as { k: string; n: number }[]).map((r) => [r.k, Number(r.n)] as [string, number]);
    const key = this.getChannelKey();
    const group = this.sql("SELECT version FROM groups WHERE group_id = 'public'").get() as
      | { version: number }
      | undefined;
    const members = (this.sql("SELECT member_id FROM group_members WHERE group_id = 'public'").all() as {
      member_id: string;
    }[]).map((r) => r.member_id);
    return {
      users: this.listUsers(),
      servers: this.listServers(),
      homes: (this.sql("SELECT user_id, server_id FROM homes").all() as {
        user_id: string;
        server_id: string;
      }[])
        .map((r) => [r.user_id, r.server_id]),
      queued: count("SELECT user_id AS k, COUNT(*) AS n FROM queue GROUP BY user_id"),
      outbox: count("SELECT server_id AS k, COUNT(*) AS n FROM outbox GROUP BY server_id"),
      channel: key ? { version: Number(group?.version ?? 1), creatorPub: key.creatorPub, members } : null,
      acceptedRefs: (this.sql("SELECT ref, at FROM accepted_refs ORDER BY at DESC LIMIT 100000").all() as {
        ref: string;
        at: number;
      }[]).reverse().map((r) => [r.ref, Number(r.at)]),
      pins: (this.sql("SELECT user_id, pubkey FROM user_pins").all() as {
        user_id: string;
        pubkey: string;
      }[]).map((r) => [r.user_id, r.pubkey]),
      seen: (this.sql("SELECT key, exp FROM seen ORDER BY exp").all() as { key: string; exp: number }[])
        .map((r) => [r.key, Number(r.exp)]),
    };
  }

  /** Close the database. */
  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}

function parseMeta(text: string | null): Record<string, unknown> | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text);
    return v && typeof v === "object" && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}
