/**
 * Crash-only storage: when a store write fails, `socp serve` logs it and exits non-zero instead of running with
 * memory ahead of disk; started again on the same data directory, it resumes from the database.
 *
 * The write is made to fail by another process-level connection holding SQLite's write lock (tests run as root,
 * so file permissions would not stop the node): the node's write waits its busy timeout, then fails.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";

const opts = { sanitizeOps: false, sanitizeResources: false }; // the client's socket is cut by the node's exit
const USER = "5704a6e0-0000-4000-8000-0000000000f1";

Deno.test(
  { name: "a failed store write stops the node (exit 1); it restarts from the database", ...opts },
  async () => {
    const key = await fixtureKey("user1");
    const node = await NodeProcess.start();
    const db = new DatabaseSync(join(node.dataDir, "socp.db"));
    let locked = false;
    try {
      db.exec("BEGIN IMMEDIATE"); // hold the write lock: the node's next write fails after its busy timeout
      locked = true;
      // A user's hello is persisted (upsertUser): that write fails.
      SocpClient.connect(node.url, { userId: USER, key, displayName: "x" }).then((c) => c.close(), () => {});
      await until(
        () => node.logs.some((l) => l.includes("store.write_failed")),
        "the failed write logged",
        30_000,
      );
      await until(
        () => node.logs.some((l) => l.startsWith("socp: cannot write the database")),
        "the node to say why it stopped",
        30_000,
      );
      const status = await node.kill();
      assert.equal(status.success, false);
      assert.equal(status.code, 1);
      assert.ok(node.logs.some((l) => l.includes("node.stopped")), "it stopped cleanly");
    } finally {
      if (locked) db.exec("ROLLBACK");
      db.close();
      await node.kill();
    }

    // Restarted on the same data directory, it serves again.
    const again = await NodeProcess.start({ dataDir: node.dataDir });
    try {
      assert.equal(again.serverId, node.serverId);
      const c = await SocpClient.connect(again.url, { userId: USER, key, displayName: "x" });
      await c.close();
      const res = await fetch(`${again.http}/healthz`, { signal: AbortSignal.timeout(5000) });
      assert.equal((await res.json()).status, "ok");
    } finally {
      await again.kill();
    }
  },
);
