/**
 * socp as a library: a separate project in a temp dir (no deno.json, no import map) imports this one's mod.ts by
 * file URL and, in a dozen lines, starts a node, connects two clients and exchanges a DM.
 */
import assert from "node:assert/strict";
import { fixtureDataDir } from "./helpers/node_process.ts";

const MOD = new URL("../mod.ts", import.meta.url).href;
const pem = (name: string) => new URL(`fixtures/keys/${name}.pem`, import.meta.url).pathname;

const PROGRAM = `
import { PrivateKey, SocpClient, startNode } from "${MOD}";
const [dataDir, alicePem, bobPem] = Deno.args;
const node = await startNode({ host: "127.0.0.1", port: 0, dataDir, logLevel: "warn" });
const url = "ws://127.0.0.1:" + node.port;
const [ka, kb] = await Promise.all([alicePem, bobPem].map((f) => PrivateKey.fromPem(Deno.readTextFileSync(f))));
const alice = await SocpClient.connect(url, { userId: crypto.randomUUID(), key: ka, displayName: "alice" });
const bob = await SocpClient.connect(url, { userId: crypto.randomUUID(), key: kb, displayName: "bob" });
const got = new Promise((resolve) => (bob.onEvent = (e) => e.kind === "dm" && resolve(e.text)));
while (!alice.directory.has(bob.userId)) await new Promise((r) => setTimeout(r, 50));
await alice.tell("bob", "hello from an embedding project");
console.log("bob got: " + await got);
await alice.close();
await bob.close();
await node.close();
`;

Deno.test("another project imports mod.ts by file URL, runs a node and two clients, and a DM arrives", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-embed-" });
  Deno.writeTextFileSync(`${dir}/main.ts`, PROGRAM);
  const out = await new Deno.Command(Deno.execPath(), {
    // The node's data directory holds a fixture identity and channel key, and the users' keys are fixture PEM
    // files: RSA-4096 generation would cost seconds of CPU and is tested elsewhere (tests/crypto/rsa_test.ts).
    args: [
      "run",
      "-A",
      "main.ts",
      await fixtureDataDir(undefined, undefined, { channel: true }),
      pem("user1"),
      pem("user2"),
    ],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(120_000),
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(
    stdout.trim(),
    "bob got: hello from an embedding project",
    new TextDecoder().decode(out.stderr),
  );
  assert.equal(out.code, 0);
});
