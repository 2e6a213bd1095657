/**
 * PROFILE §15 "Closing a socket we dialed" (issue 17): a WebSocket client may send only close codes 1000 and
 * 3000–4999. A scripted introducer answers SERVER_HELLO_JOIN with ERROR: our node abandons that join (the socket
 * really closes, with a code a client may send) and retries the bootstrap list with backoff (a second JOIN on a
 * new connection).
 */
import assert from "node:assert/strict";
import { ScriptedServer } from "../helpers/scripted_server.ts";
import { until, within } from "../helpers/until.ts";
import { joiningNode, opts, serverKey as introKey } from "./common.ts";

Deno.test({ name: "a JOIN answered by ERROR is closed for real and retried", ...opts }, async () => {
  await using intro = ScriptedServer.start({
    key: introKey,
    onFrame: (f, conn) => {
      if (f.type !== "SERVER_HELLO_JOIN") return;
      conn.sendRaw({
        type: "ERROR",
        from: "server",
        to: f.from,
        ts: Date.now(),
        payload: { code: "MISSING_ID_OR_TS", detail: "refused" },
        sig: "",
      });
    },
  });
  await using _node = await joiningNode(intro.port, introKey);
  const first = await until(() => intro.conns[0], "the first join connection");
  await first.waitFor((f) => f.type === "SERVER_HELLO_JOIN", "the first JOIN");
  const closed = await within(first.closed, "our node to close the refused join connection", 10_000);
  console.log(
    `[interop] JOIN answered by ERROR: closed by our node with ${closed.code} "${closed.reason}"`,
  );
  assert.ok(
    closed.code === 1000 || (closed.code >= 3000 && closed.code <= 4999),
    `a client close code, got ${closed.code}`,
  );
  const second = await until(() => intro.conns[1], "a second join connection (the retry)", 15_000);
  const join = await second.waitFor((f) => f.type === "SERVER_HELLO_JOIN", "the retried JOIN");
  assert.equal(join.from, first.received[0].from);
  const errors = intro.conns.flatMap((c) => c.received.filter((f) => f.type === "ERROR"));
  assert.deepEqual(errors, [], "an ERROR is never answered with an ERROR");
});

Deno.test({ name: "a JOIN never answered is closed with a client code and retried", ...opts }, async () => {
  // The join timeout closes with the reason we send as 1001 on accepted sockets: a client sends it as 4001.
  await using intro = ScriptedServer.start({ key: introKey });
  await using _node = await joiningNode(intro.port, introKey);
  const first = await until(() => intro.conns[0], "the first join connection");
  const closed = await within(first.closed, "our node to give up the silent join connection", 15_000);
  console.log(`[interop] JOIN never answered: closed by our node with ${closed.code} "${closed.reason}"`);
  assert.equal(closed.code, 4001);
  const second = await until(() => intro.conns[1], "a second join connection (the retry)", 15_000);
  await second.waitFor((f) => f.type === "SERVER_HELLO_JOIN", "the retried JOIN");
});
