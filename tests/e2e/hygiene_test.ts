/**
 * Issue 14 §8 hygiene, against real node processes: the data directory and the database files are private to the
 * node's user (and wider modes left by an older version are narrowed at start, with a log line); lab modes come
 * only from a flag or the real environment, never from a .env file; the freshness window is bounded; a Host header
 * that is not a host gets 400, with no stack trace in the log.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fixtureDataDir, NodeProcess } from "../helpers/node_process.ts";

/** Sanitizers off: the node runs as a child process whose stderr pipe outlives single steps. */
const opts = { sanitizeOps: false, sanitizeResources: false };
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

const mode = (path: string) => (Deno.statSync(path).mode ?? 0) & 0o777;

async function socp(args: string[], env: Record<string, string> = {}, cwd?: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** One raw HTTP/1.1 request with the given Host header; the status line. */
async function rawStatus(port: number, host: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
  const text = await new Response(conn.readable).text();
  return text.split("\r\n")[0];
}

Deno.test({ name: "the data directory is 0700 and socp.db, -wal, -shm are 0600", ...opts }, async () => {
  const dir = join(Deno.makeTempDirSync({ prefix: "socp-modes-" }), "data");
  const node = await NodeProcess.start({ dataDir: dir, fresh: true }); // the node creates the directory
  try {
    assert.equal(mode(dir), 0o700);
    for (const f of ["socp.db", "socp.db-wal", "socp.db-shm", "node.secret"]) {
      assert.equal(mode(join(dir, f)).toString(8), "600", f);
    }
  } finally {
    await node.kill();
  }
});

Deno.test(
  { name: "wider modes left on the data directory are narrowed at start, with a log line", ...opts },
  async () => {
    // A directory the node used before (a fixture identity: the test is about modes, not key generation).
    const dir = await fixtureDataDir(
      undefined,
      join(Deno.makeTempDirSync({ prefix: "socp-modes-" }), "data"),
      {
        channel: true,
      },
    );
    const first = await NodeProcess.start({ dataDir: dir });
    await first.kill();
    Deno.chmodSync(dir, 0o755);
    for (const f of ["socp.db", "socp.db-wal", "socp.db-shm"]) {
      try {
        Deno.chmodSync(join(dir, f), 0o644);
      } catch { /* -wal and -shm may be gone after a clean close */ }
    }
    const node = await NodeProcess.start({ dataDir: dir });
    try {
      assert.equal(mode(dir), 0o700);
      assert.equal(mode(join(dir, "socp.db")), 0o600);
      for (const f of ["socp.db-wal", "socp.db-shm"]) assert.equal(mode(join(dir, f)), 0o600, f);
      const fixed = node.logs.filter((l) => l.includes("WARN data_dir.mode_fixed"));
      assert.ok(fixed.some((l) => l.includes(`path=${dir} from=0755 to=0700`)), fixed.join("\n"));
      assert.ok(
        fixed.some((l) => l.includes(`path=${join(dir, "socp.db")} from=0644 to=0600`)),
        fixed.join("\n"),
      );
    } finally {
      await node.kill();
    }
  },
);

Deno.test({
  name: "a lab mode in a .env file is ignored with a warning; a flag or the environment turns it on",
  ...opts,
}, async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-lab-" });
  Deno.writeTextFileSync(join(dir, ".env"), "SOCP_LAB_REPLAY=1\nSOCP_BACKDOOR_WEAK_KEYS=yes\n");
  const health = async (n: NodeProcess) => (await (await fetch(`${n.http}/healthz`)).json()).lab_modes;
  const fromFile = await NodeProcess.start({ args: ["--env-file", join(dir, ".env")] });
  try {
    assert.deepEqual(await health(fromFile), []);
    const warned = fromFile.logs.filter((l) => l.includes("WARN config.lab_mode_ignored"));
    assert.equal(warned.length, 2, fromFile.logs.join("\n"));
    assert.ok(warned.some((l) => l.includes("variable=SOCP_LAB_REPLAY")), warned.join("\n"));
    assert.ok(warned.some((l) => l.includes("variable=SOCP_BACKDOOR_WEAK_KEYS")), warned.join("\n"));
    assert.ok(!fromFile.logs.some((l) => l.includes("lab_mode.on")));
  } finally {
    await fromFile.kill();
  }
  const flagged = await NodeProcess.start({ args: ["--lab-replay"] });
  try {
    assert.deepEqual(await health(flagged), ["replay"]);
  } finally {
    await flagged.kill();
  }
  const fromEnv = await NodeProcess.start({ env: { SOCP_LAB_WEAK_KEYS: "1" } });
  try {
    assert.deepEqual(await health(fromEnv), ["weak-keys"]);
  } finally {
    await fromEnv.kill();
  }
});

Deno.test({ name: "the freshness window is at most one hour", ...opts }, async () => {
  const data = Deno.makeTempDirSync({ prefix: "socp-fresh-" });
  const r = await socp(["serve", "--port", "0", "--data", join(data, "d")], {
    SOCP_FRESHNESS_SECONDS: "31536000",
  });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /SOCP_FRESHNESS_SECONDS "31536000" is too long: at most 3600 \(one hour\)/);
  assert.ok(!/\n\s+at /.test(r.stderr), "no stack trace");
});

Deno.test(
  { name: "a Host header that is not a host gets 400, and nothing in the log", ...opts },
  async () => {
    const node = await NodeProcess.start();
    try {
      assert.equal(await rawStatus(node.port, `127.0.0.1:${node.port}`), "HTTP/1.1 200 OK");
      for (const host of ["[::1", "x:99999", "%%", "a b", "a/b", "chat.example:80:80", "é.example"]) {
        assert.equal(await rawStatus(node.port, host), "HTTP/1.1 400 Bad Request", JSON.stringify(host));
      }
      // The node is still fine, and logged no error and no stack.
      assert.equal((await fetch(`${node.http}/healthz`)).status, 200);
      assert.ok(!node.logs.some((l) => /ERROR|TypeError|Invalid URL|^\s+at /.test(l)), node.logs.join("\n"));
    } finally {
      await node.kill();
    }
  },
);
