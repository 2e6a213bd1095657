/** The `socp` command line, run as a real process. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { VERSION } from "../../lib/version.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until, within } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function socp(args: string[], o: { env?: Record<string, string>; cwd?: string; stdin?: string } = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...o.env },
    cwd: o.cwd,
    stdin: o.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (o.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(o.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({ name: "socp --version and socp help", ...opts }, async () => {
  const v = await socp(["--version"]);
  assert.equal(v.code, 0);
  assert.equal(v.stdout.trim(), `socp ${VERSION}`);
  const h = await socp(["help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /socp serve \[--host H\] \[--port P\]/);
  const sh = await socp(["serve", "--help"]);
  assert.match(sh.stdout, /SOCP_PORT/);
  assert.match((await socp(["help", "chat"])).stdout, /\/tell <user> <text>/);
  // -h works for every command, as it does for socp itself.
  for (
    const [cmd, text] of [["chat", /\/tell <user> <text>/], ["serve", /SOCP_PORT/], [
      "info",
      /bootstrap/,
    ]] as const
  ) {
    const r = await socp([cmd, "-h"]);
    assert.equal(r.code, 0, `socp ${cmd} -h: ${r.stderr}`);
    assert.match(r.stdout, text);
  }
  assert.equal((await socp(["-h"])).code, 0);
});

Deno.test({
  name: "unknown flags, bad values and unknown commands are clear errors (exit 2, no stack)",
  ...opts,
}, async () => {
  for (
    const [args, msg] of [
      [["serve", "--bogus"], /unknown option '--bogus'|Unknown option '--bogus'/i],
      [["serve", "--port", "abc"], /invalid --port "abc": expected a whole number from 0 to 65535/],
      [["serve", "--port", "70000"], /invalid --port "70000"/],
      [["serve", "--log-level", "loud"], /invalid --log-level "loud"/],
      [["frobnicate"], /unknown command "frobnicate"/],
      [["chat"], /needs --server URL/],
      [["chat", "--server", "http://x"], /must be a ws:\/\/ or wss:\/\/ URL/],
      [["serve", "--env-file", "/nonexistent/.env"], /file not found/],
    ] as [string[], RegExp][]
  ) {
    const r = await socp(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, msg, args.join(" "));
    assert.ok(!/\n\s+at /.test(r.stderr), `no stack trace for ${args.join(" ")}`);
  }
});

Deno.test({ name: "serve on a port in use says so and suggests --port", ...opts }, async () => {
  const node = await NodeProcess.start();
  try {
    const r = await socp([
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(node.port),
      "--data",
      node.dataDir + "-2",
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`port ${node.port} on 127.0.0.1 is in use: pass --port`));
    // Said before anything was written: no data directory, no database, no key.
    assert.throws(() => Deno.statSync(node.dataDir + "-2"), Deno.errors.NotFound);
  } finally {
    await node.kill();
  }
});

Deno.test(
  { name: "socp info prints the server id, key and a bootstrap entry, stable across runs", ...opts },
  async () => {
    const dir = Deno.makeTempDirSync();
    const a = await socp(["info", "--data", dir, "--public-host", "chat.example", "--port", "9000"]);
    assert.equal(a.code, 0, a.stderr);
    const id = /server_id:\s+(\S+)/.exec(a.stdout)![1];
    const key = /pubkey:\s+(\S+)/.exec(a.stdout)![1];
    assert.match(a.stdout, new RegExp(`bootstrap:\\s+chat\\.example:9000#${key.replace(/[-]/g, "\\-")}`));
    assert.match(a.stdout, /bootstrap_servers:\n {2}- host: "chat\.example"\n {4}port: 9000/);
    const b = await socp(["info", "--data", dir]);
    assert.equal(/server_id:\s+(\S+)/.exec(b.stdout)![1], id);
    // The private key is not stored in the clear.
    const db = Deno.readFileSync(join(dir, "socp.db"));
    assert.ok(!new TextDecoder("latin1").decode(db).includes("PRIVATE KEY"));
    assert.equal(
      Deno.statSync(join(dir, "node.secret")).mode! & 0o077,
      0,
      "node.secret is private to its owner",
    );
  },
);

Deno.test({ name: "settings come from a .env file and the environment", ...opts }, async () => {
  const dir = Deno.makeTempDirSync();
  // Only the .env file names a public host and a frame limit (NodeProcess passes --host, --port and --data as
  // flags, which win over it); the environment overrides the file's log level (at "warn" the node would not log
  // node.listening, and NodeProcess.start would fail).
  Deno.writeTextFileSync(
    join(dir, "custom.env"),
    `SOCP_PUBLIC_HOST=from-env-file.example\nSOCP_MAX_FRAME_BYTES=4096\nSOCP_LOG_LEVEL=warn\n`,
  );
  const node = await NodeProcess.start({
    args: ["--env-file", join(dir, "custom.env")],
    env: { SOCP_LOG_LEVEL: "debug" },
  });
  try {
    const listening = node.logs.find((l) => l.includes("node.listening"));
    assert.match(listening ?? "", new RegExp(`url=ws://from-env-file\\.example:${node.port}`));
    // The file's frame limit is in force: 5,000 bytes close the socket with 1009.
    const p = await RawPeer.open(node.url);
    p.send("x".repeat(5000));
    const closed = await within(p.closed, "the socket closes");
    assert.equal(closed.code, 1009);
    // The environment's log level (debug) beat the file's (warn).
    assert.ok(node.logs.some((l) => /DEBUG conn\.opened/.test(l)), node.logs.join("\n"));
  } finally {
    await node.kill();
  }
});

async function keyFile(dir: string, name: string, fixture: string, userId: string): Promise<string> {
  const key = await fixtureKey(fixture);
  const path = join(dir, `${name}.json`);
  const file = {
    format: "socp-user-key/1",
    user_id: userId,
    display_name: name,
    pubkey: key.publicKey,
    sealed: await sealPrivateKey(await key.exportPkcs8(), "pw"),
  };
  Deno.writeTextFileSync(path, JSON.stringify(file));
  return path;
}

Deno.test(
  { name: "two `socp chat` processes see each other in /list and talk with /tell", ...opts },
  async () => {
    const node = await NodeProcess.start();
    const dir = Deno.makeTempDirSync();
    try {
      const aliceKey = await keyFile(dir, "alice", "user5", crypto.randomUUID());
      const bobKey = await keyFile(dir, "bob", "user6", crypto.randomUUID());
      const env = { SOCP_PASSPHRASE: "pw", SOCP_HOME: join(dir, "home") };
      // Bob waits, lists, answers; Alice speaks once Bob is there. Both read commands from stdin.
      const bobCmd = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, "chat", "--server", node.url, "--name", "bob", "--key", bobKey],
        env,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const bobOut: string[] = [];
      const reader = bobCmd.stdout.pipeThrough(new TextDecoderStream()).getReader();
      (async () => {
        for (let r = await reader.read(); !r.done; r = await reader.read()) bobOut.push(r.value);
      })();
      const bobIn = bobCmd.stdin.getWriter();
      const enc = new TextEncoder();
      await until(() => bobOut.join("").includes("connected to"), "bob is connected");

      const alice = await socp(["chat", "--server", node.url, "--name", "alice", "--key", aliceKey], {
        env,
        stdin: "/list\n/tell bob hello from alice\n/help\n/nonsense\n/quit\n",
      });
      assert.equal(alice.code, 0, alice.stderr);
      // Each line: name, user id, (you), home server, key fingerprint.
      assert.match(
        alice.stdout,
        new RegExp(
          String
            .raw`\* 2 online:\n {2}alice {2}\S+ {2}\(you\) {2}@${node.serverId} {2}[0-9a-f]{4}(:[0-9a-f]{4}){7}\n` +
            String.raw` {2}bob {2}\S+ {2}@${node.serverId} {2}[0-9a-f]{4}(:[0-9a-f]{4}){7}\n`,
        ),
      );
      assert.match(alice.stdout, /\[to bob\] hello from alice/);
      assert.match(alice.stdout, /\/tell <user> <text>/);
      assert.match(alice.stdout, /unknown command \/nonsense/);

      await until(() => bobOut.join("").includes("[dm] alice"), "bob gets alice's DM", 15_000);
      assert.match(bobOut.join(""), /\[dm\] alice: hello from alice\n/);
      assert.ok(!bobOut.join("").includes("UNVERIFIED"));
      await bobIn.write(enc.encode("/tell alice gone\n/quit\n"));
      await bobIn.close();
      const st = await bobCmd.status;
      assert.equal(st.code, 0);
      assert.match(
        bobOut.join(""),
        /\[to alice\] gone {2}\(offline: it will be delivered when they return\)/,
      );
    } finally {
      await node.kill();
    }
  },
);

Deno.test({ name: "socp chat with a wrong passphrase says so", ...opts }, async () => {
  const dir = Deno.makeTempDirSync();
  const k = await keyFile(dir, "x", "user1", crypto.randomUUID());
  const r = await socp(["chat", "--server", "ws://127.0.0.1:1", "--key", k], {
    env: { SOCP_PASSPHRASE: "nope" },
  });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /wrong passphrase/);
});
