/**
 * TLS federation from the docs (issue 15): a TLS node prints its bootstrap entry (log line, `/.well-known/socp`,
 * `socp info`: all the same `wss://` entry), and a second node joins with exactly that entry plus
 * `--ca-cert` for the node's private CA (no DENO_CERT); a DM crosses the TLS link both ways. Without the CA the
 * join fails and the log says why (unknown certificate); a certificate for another name says so too.
 */
import assert from "node:assert/strict";
import { SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { makeTestCert } from "../helpers/test_ca.ts";
import { until } from "../helpers/until.ts";

/** Sanitizers off: the nodes are child processes whose pipes outlive single steps. */
const opts = { sanitizeOps: false, sanitizeResources: false };
const TIMERS = ["--heartbeat-interval", "0.5", "--link-timeout", "2"];
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CHAT = new URL("../fixtures/wss_chat.ts", import.meta.url).pathname;
const U1 = "a11ce000-0000-4000-8000-0000000071a1";
const U2 = "b0b00000-0000-4000-8000-0000000071a2";

async function health(n: NodeProcess): Promise<{ servers_linked: number }> {
  return await (await fetch(`${n.http}/healthz`)).json();
}

/** The entry the node printed at start (log line node.bootstrap_entry). */
function printedEntry(n: NodeProcess): string | undefined {
  for (const l of n.logs) {
    const m = /node\.bootstrap_entry entry=(\S+)/.exec(l);
    if (m) return m[1];
  }
}

Deno.test(
  { name: "a node joins a TLS node with the entry it prints and --ca-cert; a DM crosses both ways", ...opts },
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "socp-tlsjoin-" });
    const { ca, cert, key } = await makeTestCert(dir);
    const a = await NodeProcess.start({ args: ["--tls-cert", cert, "--tls-key", key, ...TIMERS] });
    let b: NodeProcess | undefined;
    let c2: SocpClient | undefined;
    try {
      const entry = await until(() => printedEntry(a), "the printed bootstrap entry");
      assert.match(entry, new RegExp(`^wss://127\\.0\\.0\\.1:${a.port}#`));
      // The same entry in /.well-known/socp and from `socp info`.
      const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(ca)] });
      const wk = await (await fetch(`https://127.0.0.1:${a.port}/.well-known/socp`, {
        client,
        signal: AbortSignal.timeout(10_000),
      })).json();
      client.close();
      assert.equal(wk.bootstrap, entry);
      const info = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          MAIN,
          "info",
          "--data",
          a.dataDir,
          "--port",
          String(a.port),
          "--public-host",
          "127.0.0.1",
          "--tls-cert",
          cert,
        ],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const infoText = new TextDecoder().decode(info.stdout);
      assert.equal(info.code, 0, new TextDecoder().decode(info.stderr));
      assert.ok(infoText.includes(`bootstrap:   ${entry}\n`), infoText);

      // Exactly that entry, and the CA file: no DENO_CERT in the joining node's environment.
      b = await NodeProcess.start({
        args: ["--bootstrap", entry, "--ca-cert", ca, ...TIMERS],
      });
      await until(async () => (await health(b!)).servers_linked === 1, "b linked to a over wss", 30_000);
      assert.ok(b.logs.some((l) => l.includes("network.joined")), b.logs.join("\n"));
      assert.ok(!b.logs.some((l) => l.includes("dial.tls_failed")), b.logs.join("\n"));

      const k2 = await fixtureKey("user2");
      c2 = await SocpClient.connect(b.url, { userId: U2, key: k2, displayName: "ben" });
      const got: string[] = [];
      const dm = Promise.withResolvers<string>();
      c2.onEvent = (e) => {
        if (e.kind === "dm") {
          got.push(e.text);
          dm.resolve(`${e.from} ${e.text} ${e.verified}`);
        }
      };
      // The user on the TLS node runs in a child that trusts the CA (the test runner's own WebSocket cannot).
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--cert", ca, CHAT, `wss://localhost:${a.port}`, "user1", U1, U2, "over tls"],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(60_000),
      }).spawn();
      const out = child.output();
      assert.equal(await dm.promise, `${U1} over tls true`);
      await c2.tell(U1, "and back");
      const res = await out;
      const said = new TextDecoder().decode(res.stdout);
      assert.match(said, /^GOT and back true$/m, said + new TextDecoder().decode(res.stderr));
      assert.deepEqual(got, ["over tls"]);
    } finally {
      await c2?.close();
      await b?.kill();
      await a.kill();
    }
  },
);

Deno.test(
  { name: "--ca-cert also covers the https probe of a TLS node that joined us", ...opts },
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "socp-tlsjoin-" });
    const { ca, cert, key } = await makeTestCert(dir);
    const intro = await NodeProcess.start({ args: ["--ca-cert", ca, "--log-level", "debug", ...TIMERS] });
    let joiner: NodeProcess | undefined;
    try {
      const entry = await until(() => printedEntry(intro), "the printed bootstrap entry");
      joiner = await NodeProcess.start({
        args: ["--tls-cert", cert, "--tls-key", key, "--bootstrap", entry, ...TIMERS],
      });
      // Plain http to the TLS joiner fails; https with the CA from --ca-cert answers (no DENO_CERT anywhere).
      const line = await until(
        () => intro.logs.find((l) => l.includes("server.software") && l.includes(joiner!.serverId)),
        "the introducer's probe of the joiner",
        20_000,
      );
      assert.match(line, /software=socp-deno\/\S+ ack=yes tls=true/);
    } finally {
      await joiner?.kill();
      await intro.kill();
    }
  },
);

Deno.test(
  {
    name: "a wss:// join the node cannot verify logs why: unknown CA, then a certificate for another name",
    ...opts,
  },
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "socp-tlsjoin-" });
    const { cert, key } = await makeTestCert(dir);
    const a = await NodeProcess.start({ args: ["--tls-cert", cert, "--tls-key", key, ...TIMERS] });
    let b: NodeProcess | undefined;
    let c: NodeProcess | undefined;
    let d: NodeProcess | undefined;
    try {
      const entry = await until(() => printedEntry(a), "the printed bootstrap entry");
      // No CA: the certificate's issuer is unknown.
      b = await NodeProcess.start({ args: ["--bootstrap", entry, ...TIMERS] });
      const unknown = await until(
        () => b!.logs.find((l) => l.includes("WARN dial.tls_failed")),
        "the TLS failure warning",
        20_000,
      );
      assert.match(unknown, /not signed by a CA this node trusts/);
      assert.match(unknown, /--ca-cert/);
      // The CA is trusted, but the certificate of this node is for another name than the one dialed.
      await b.kill();
      b = undefined;
      const other = Deno.makeTempDirSync({ prefix: "socp-tlsjoin-" });
      const wrong = await makeTestCert(other, "DNS:chat.example");
      d = await NodeProcess.start({ args: ["--tls-cert", wrong.cert, "--tls-key", wrong.key, ...TIMERS] });
      const dEntry = await until(() => printedEntry(d!), "the printed bootstrap entry");
      c = await NodeProcess.start({ args: ["--bootstrap", dEntry, "--ca-cert", wrong.ca, ...TIMERS] });
      const name = await until(
        () => c!.logs.find((l) => l.includes("WARN dial.tls_failed")),
        "the name mismatch warning",
        20_000,
      );
      assert.match(name, /certificate is for another name/);
    } finally {
      await c?.kill();
      await d?.kill();
      await b?.kill();
      await a.kill();
    }
  },
);
