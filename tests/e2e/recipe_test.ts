/**
 * The README's two-server recipe, run as written on one machine (two real processes; only the ports are swapped
 * for free ones and the listen address pinned to loopback), and what happens when it is not followed: a second
 * node on the same data directory is refused, and a bootstrap entry that is the node itself is said so.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { NodeProcess } from "../helpers/node_process.ts";
import { TextLineStream } from "../helpers/text_lines.ts";
import { until } from "../helpers/until.ts";

/** Sanitizers off: the nodes are child processes whose pipes outlive single steps. */
const opts = { sanitizeOps: false, sanitizeResources: false };
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const README = new URL("../../README.md", import.meta.url);

/** The shell lines of the README's fenced block that follows the line containing `marker`. */
function readmeBlock(marker: string): string[] {
  const text = Deno.readTextFileSync(README);
  const at = text.indexOf(marker);
  assert.ok(at >= 0, `README has "${marker}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(m, `a sh block after "${marker}"`);
  return m[1].split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l && !l.startsWith("#"));
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A process started by `sh -c "exec LINE"` in `cwd`, its stderr lines collected. */
function spawnLine(line: string, cwd: string) {
  const child = new Deno.Command("sh", {
    args: ["-c", `exec ${line}`],
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const logs: string[] = [];
  (async () => {
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(new TextLineStream());
    for await (const l of lines) logs.push(l);
  })();
  return {
    logs,
    child,
    kill: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}

Deno.test({ name: "the README's two-server recipe works on one machine as written", ...opts }, async () => {
  const lines = readmeBlock("Two servers on one machine");
  assert.equal(lines.length, 2, lines.join("\n"));
  const [p1, p2] = [freePort(), freePort()];
  const local = (l: string) =>
    l.replaceAll("deno task start", `${Deno.execPath()} run -A ${MAIN} serve --host 127.0.0.1`)
      .replaceAll("deno run -A main.ts", `${Deno.execPath()} run -A ${MAIN}`)
      .replaceAll("8765", String(p1)).replaceAll("8766", String(p2));
  const cwd = Deno.makeTempDirSync({ prefix: "socp-recipe-" });
  const first = spawnLine(local(lines[0]), cwd);
  let second: ReturnType<typeof spawnLine> | undefined;
  try {
    await until(
      () => first.logs.some((l) => l.includes("node.listening")),
      "the first server listens",
      60_000,
    );
    second = spawnLine(local(lines[1]), cwd);
    await until(() => second!.logs.some((l) => l.includes("network.joined")), "the second joins", 60_000);
    const health = async (p: number) => await (await fetch(`http://127.0.0.1:${p}/healthz`)).json();
    await until(async () => (await health(p1)).servers_linked === 1, "the first links the second");
    const [h1, h2] = [await health(p1), await health(p2)];
    assert.notEqual(h1.server_id, h2.server_id);
    assert.equal(h2.servers_linked, 1);
    // Each has its own data directory (./socp-data and ./socp-data-2 in the working directory).
    Deno.statSync(join(cwd, "socp-data", "socp.db"));
    Deno.statSync(join(cwd, "socp-data-2", "socp.db"));
    assert.ok(!second.logs.some((l) => l.includes("serving as introducer")), second.logs.join("\n"));
  } finally {
    await second?.kill();
    await first.kill();
  }
});

Deno.test(
  { name: "a second node on the same data directory is refused before it opens the database", ...opts },
  async () => {
    const node = await NodeProcess.start();
    try {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, "serve", "--host", "127.0.0.1", "--port", "0", "--data", node.dataDir],
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(60_000),
      }).output();
      const err = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 2, err);
      assert.match(
        err,
        /the data directory \S+ is in use by another running socp node: each server needs its own --data DIR/,
      );
      assert.ok(!/\n\s+at /.test(err), "no stack trace");
      assert.equal((await (await fetch(`${node.http}/healthz`)).json()).server_id, node.serverId);
    } finally {
      await node.kill();
    }
  },
);

Deno.test(
  { name: "a bootstrap entry that is the node itself is said so, not silently ignored", ...opts },
  async () => {
    const first = await NodeProcess.start();
    const entry = await until(
      () => /node\.bootstrap_entry entry=(\S+)/.exec(first.logs.join("\n"))?.[1],
      "the printed bootstrap entry",
    );
    await first.kill();
    const again = await NodeProcess.start({ dataDir: first.dataDir, args: ["--bootstrap", entry] });
    try {
      const warn = again.logs.find((l) => l.includes("WARN bootstrap.self"));
      assert.ok(warn, again.logs.join("\n"));
      assert.match(
        warn,
        /the only bootstrap entry is this node itself .* a second server needs its own --data DIR/,
      );
    } finally {
      await again.kill();
    }
  },
);
