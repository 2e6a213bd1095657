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
import { until, within } from "../helpers/until.ts";

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

const ALICE = "5704a6e0-0000-4000-8000-0000000000a1";
const BOB = "5704a6e0-0000-4000-8000-0000000000b0";

/**
 * A failed store read is crash-only too: Bob's queued DMs are read when he says hello (the queue's row ids, then
 * the frames a page at a time); a failure there stops the node (exit 1) instead of leaving Bob online without
 * them, and after the restart every DM reaches him. The read is made to fail on the real database by another
 * connection changing the schema under the node (the table, or the column the frames are read from) and put
 * back before the restart.
 */
for (
  const [what, breakIt, mendIt] of [
    [
      "the queue's row ids",
      "ALTER TABLE queue RENAME TO queue_away",
      "ALTER TABLE queue_away RENAME TO queue",
    ],
    [
      "the queued frames",
      "ALTER TABLE queue RENAME COLUMN frame TO frame_away",
      "ALTER TABLE queue RENAME COLUMN frame_away TO frame",
    ],
  ] as const
) {
  Deno.test({
    name: `a failed store read (${what}) stops the node; nothing is lost after the restart`,
    ...opts,
  }, async () => {
    const [aliceKey, bobKey] = await Promise.all([fixtureKey("user1"), fixtureKey("user2")]);
    const texts = ["one", "two", "three"].map((t) => `${t} for bob (${what})`);
    const node = await NodeProcess.start();
    {
      await using _node = node;
      // Bob is known to the node (he said hello once) and offline; Alice's DMs to him are queued.
      const bob = await SocpClient.connect(node.url, { userId: BOB, key: bobKey, displayName: "bob" });
      const alice = await SocpClient.connect(node.url, {
        userId: ALICE,
        key: aliceKey,
        displayName: "alice",
      });
      await using _alice = { [Symbol.asyncDispose]: () => alice.close(500) };
      await until(() => alice.isOnline(BOB), "bob online for alice");
      await bob.close(500);
      await until(() => !alice.isOnline(BOB), "bob gone");
      for (const t of texts) await alice.tell(BOB, t);
      await until(() => alice.messages().every((m) => m.state === "accepted"), "the DMs queued (ACKed)");

      const db = new DatabaseSync(join(node.dataDir, "socp.db"));
      try {
        db.exec(breakIt);
        // Bob's hello: the node reads his queue and fails.
        SocpClient.connect(node.url, { userId: BOB, key: bobKey, displayName: "bob", reconnect: false })
          .then((c) => c.close(500), () => {});
        await until(
          () => node.logs.some((l) => l.includes("store.read_failed")),
          "the failed read logged",
          30_000,
        );
        await until(
          () => node.logs.some((l) => l.startsWith("socp: cannot read the database")),
          "the node to say why it stopped",
          30_000,
        );
        const status = await within(node.child.status, "the node to exit by itself", 30_000);
        assert.equal(status.code, 1);
        assert.ok(node.logs.some((l) => l.includes("node.stopped")), "it stopped cleanly");
      } finally {
        db.exec(mendIt);
        db.close();
      }
    }

    // Restarted on the same data directory: Bob gets every DM.
    await using again = await NodeProcess.start({ dataDir: node.dataDir });
    const bob = await SocpClient.connect(again.url, { userId: BOB, key: bobKey, displayName: "bob" });
    await using _bob = { [Symbol.asyncDispose]: () => bob.close(500) };
    const got: string[] = bob.drainBuffered().flatMap((e) => e.kind === "dm" ? [e.text] : []);
    bob.onEvent = (e) => e.kind === "dm" && got.push(e.text);
    await until(() => texts.every((t) => got.includes(t)), "every DM for bob");
  });
}
