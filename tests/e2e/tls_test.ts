/**
 * End-to-end: `socp serve --tls-cert --tls-key` serves https:// and wss:// on one port, with a certificate made in
 * the test (openssl, no network). A user says hello over wss; a plain ws:// connection to the TLS port fails.
 */
import assert from "node:assert/strict";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { makeTestCert } from "../helpers/test_ca.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const USER = "a11ce000-0000-4000-8000-00000000715a";
const HELLO = new URL("../fixtures/wss_hello.ts", import.meta.url).pathname;

Deno.test(
  { name: "a node with --tls-cert/--tls-key serves https and wss; plain ws fails", ...opts },
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "socp-tls-" });
    const { ca, cert, key } = await makeTestCert(dir);
    const node = await NodeProcess.start({ args: ["--tls-cert", cert, "--tls-key", key] });
    try {
      // https: /.well-known/socp says wss and tls.
      const client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(ca)] });
      const res = await fetch(`https://localhost:${node.port}/.well-known/socp`, {
        client,
        signal: AbortSignal.timeout(10_000),
      });
      const info = await res.json();
      client.close();
      assert.equal(info.tls, true);
      assert.match(info.url, /^wss:\/\//);
      assert.equal(info.server_id, node.serverId);

      // wss: a user's hello is answered with our ACK.
      const pub = (await fixtureKey("user1")).publicKey;
      const child = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--cert", ca, HELLO, `wss://localhost:${node.port}`, USER, pub],
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const said = new TextDecoder().decode(child.stdout).trim();
      assert.equal(said, 'ACK "USER_HELLO"', new TextDecoder().decode(child.stderr));

      // Plain ws:// to the TLS port never opens.
      const ws = new WebSocket(`ws://127.0.0.1:${node.port}`);
      const outcome = await new Promise<string>((resolve) => {
        const t = setTimeout(() => resolve("no answer"), 10_000);
        ws.onopen = () => (clearTimeout(t), resolve("open"));
        ws.onerror = () => (clearTimeout(t), resolve("error"));
      });
      assert.equal(outcome, "error");
    } finally {
      await node.kill();
    }
  },
);

Deno.test("socp serve with only --tls-cert says both files are needed", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../../main.ts", import.meta.url).pathname,
      "serve",
      "--tls-cert",
      "/nonexistent",
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /needs both --tls-cert FILE and --tls-key FILE/);
});
