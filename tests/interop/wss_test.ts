/**
 * TLS peers: a bootstrap entry written as a `wss://` URL (issue 8 item 12) joins a TLS node over wss; and a TLS
 * node that joined us is probed over https (its /.well-known/socp says whether it speaks the outbox ACK
 * extension, PROFILE §15) and marked for wss redials.
 */
import assert from "node:assert/strict";
import { NodeProcess } from "../helpers/node_process.ts";
import { makeTestCert } from "../helpers/test_ca.ts";
import { until } from "../helpers/until.ts";
import { opts, TIMERS } from "./common.ts";

Deno.test({ name: "a wss:// bootstrap URL joins a TLS node", ...opts }, async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-wss-" });
  const { ca, cert, key } = await makeTestCert(dir);
  await using a = await NodeProcess.start({ args: ["--tls-cert", cert, "--tls-key", key, ...TIMERS] });
  using client = Deno.createHttpClient({ caCerts: [Deno.readTextFileSync(ca)] });
  const health = async (n: NodeProcess, tls: boolean) => {
    const res = await fetch(`${tls ? "https://localhost" : "http://127.0.0.1"}:${n.port}/healthz`, {
      client,
    });
    return await res.json();
  };
  const wk = await (await fetch(`https://localhost:${a.port}/.well-known/socp`, { client })).json();
  // DENO_CERT makes the joining node trust the test CA for its wss dial and its https probe.
  await using b = await NodeProcess.start({
    args: ["--bootstrap", `wss://localhost:${a.port}/#${wk.pubkey}`, "--log-level", "debug", ...TIMERS],
    env: { DENO_CERT: ca },
  });
  await until(async () => (await health(b, false)).servers_linked === 1, "b linked to a over wss");
  await until(async () => (await health(a, true)).servers_linked === 1, "a linked to b");
  assert.ok(b.logs.some((l) => l.includes("network.joined")));
});

Deno.test(
  { name: "a TLS node that joined us is probed over https when plain http fails", ...opts },
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "socp-wss-" });
    const { ca, cert, key } = await makeTestCert(dir);
    await using intro = await NodeProcess.start({
      args: ["--log-level", "debug", ...TIMERS],
      env: { DENO_CERT: ca },
    });
    const wk = await (await fetch(`${intro.http}/.well-known/socp`)).json();
    await using joiner = await NodeProcess.start({
      args: [
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--bootstrap",
        `127.0.0.1:${intro.port}#${wk.pubkey}`,
        ...TIMERS,
      ],
    });
    const line = await until(
      () => intro.logs.find((l) => l.includes("server.software") && l.includes(joiner.serverId)),
      "the introducer's probe of the joiner",
      15_000,
    );
    assert.match(line, /software=socp-deno\/\S+ ack=yes tls=true/);
  },
);
