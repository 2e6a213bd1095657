/**
 * A client closed (or refused) and started again (the web app's "use this identity here") runs on the core's
 * deadlines again: its retries come at the core's backoff, as before the close.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";

const key = await fixtureKey("user1");

Deno.test("a client started again after close retries at the core's backoff, and leaves no timer once closed", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close(); // nobody listens there now: every attempt is refused
  const c = await SocpClient.create(`ws://127.0.0.1:${port}`, {
    userId: crypto.randomUUID(),
    key,
    backoffMs: 20,
    maxBackoffMs: 40,
  });
  let retries = 0;
  let want = Promise.withResolvers<void>();
  let wanted = 0;
  c.onEvent = (e: ClientEvent) => {
    if (e.kind !== "reconnecting") return;
    retries++;
    if (retries === wanted) want.resolve();
  };
  const waitFor = async (n: number, what: string) => {
    wanted = n;
    want = Promise.withResolvers<void>();
    if (retries >= n) return;
    const t = setTimeout(() => want.reject(new Error(`${what}: only ${retries} retries`)), 20_000);
    try {
      await want.promise;
    } finally {
      clearTimeout(t);
    }
  };
  c.start();
  await waitFor(3, "first start");
  await c.close();
  c.start();
  await waitFor(retries + 3, "started again"); // each retry after the first needs the armed timer
  await c.close();
  assert.ok(retries >= 6);
});
