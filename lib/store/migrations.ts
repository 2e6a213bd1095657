/**
 * The SQLite schema as ordered migrations (PRAGMA user_version counts how many ran): the standard's `users`,
 * `groups`, `group_members`, and the node's own tables.
 *
 * @module
 */

/** Ordered schema migrations; index i takes the file from version i to i+1. Append only. */
export const MIGRATIONS: string[] = [
  `CREATE TABLE users(
     user_id       TEXT PRIMARY KEY,
     pubkey        TEXT NOT NULL,
     privkey_store TEXT NOT NULL,
     pake_password TEXT NOT NULL,
     meta          TEXT,
     version       INT  NOT NULL
   );
   CREATE TABLE groups(
     group_id   TEXT PRIMARY KEY,
     creator_id TEXT NOT NULL,
     created_at INT,
     meta       TEXT,
     version    INT  NOT NULL
   );
   CREATE TABLE group_members(
     group_id    TEXT NOT NULL,
     member_id   TEXT NOT NULL,
     role        TEXT,
     wrapped_key TEXT NOT NULL,
     added_at    INT,
     PRIMARY KEY (group_id, member_id)
   );
   CREATE TABLE identity(
     id          INTEGER PRIMARY KEY CHECK (id = 1),
     server_id   TEXT NOT NULL,
     pubkey      TEXT NOT NULL,
     sealed_key  TEXT NOT NULL,
     created_at  INT  NOT NULL
   );`,
  `ALTER TABLE users ADD COLUMN enc_pubkey TEXT;
   ALTER TABLE users ADD COLUMN created_at INT;`,
  `CREATE TABLE servers(
     server_id TEXT PRIMARY KEY,
     pubkey    TEXT NOT NULL,
     host      TEXT NOT NULL,
     port      INT  NOT NULL,
     pinned_at INT  NOT NULL
   );`,
  `CREATE TABLE queue(
     id        INTEGER PRIMARY KEY AUTOINCREMENT,
     user_id   TEXT NOT NULL,
     frame     TEXT NOT NULL,
     queued_at INT  NOT NULL
   );
   CREATE INDEX queue_by_user ON queue(user_id, id);
   CREATE TABLE outbox(
     id        INTEGER PRIMARY KEY AUTOINCREMENT,
     server_id TEXT NOT NULL,
     ref       TEXT NOT NULL,
     frame     TEXT NOT NULL,
     queued_at INT  NOT NULL
   );
   CREATE INDEX outbox_by_server ON outbox(server_id, id);
   CREATE TABLE homes(
     user_id   TEXT PRIMARY KEY,
     server_id TEXT NOT NULL
   );
   CREATE TABLE accepted_refs(
     ref TEXT PRIMARY KEY,
     at  INT  NOT NULL
   );
   CREATE TABLE channel_key(
     id          INTEGER PRIMARY KEY CHECK (id = 1),
     creator_pub TEXT NOT NULL,
     sealed_key  TEXT NOT NULL
   );`,
  // PROFILE §16: user key pins from adverts, the seen cache across restarts, servers we never dial.
  `CREATE TABLE user_pins(
     user_id   TEXT PRIMARY KEY,
     pubkey    TEXT NOT NULL,
     pinned_at INT  NOT NULL
   );
   CREATE TABLE seen(
     key TEXT PRIMARY KEY,
     exp INT  NOT NULL
   );
   ALTER TABLE servers ADD COLUMN no_dial INT NOT NULL DEFAULT 0;`,
];
