/**
 * The socket shell (lib/client/link.ts) on real sockets and timers: it arms one timer for the core's next
 * deadline, so an attempt nobody answers is given up at its time, failed attempts are retried at the core's
 * backoff, and a closed client leaves no timer behind (the sanitizers check).
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";

const key = await fixtureKey("user1");

Deno.test("an attempt nobody answers is given up at the core's deadline: connect rejects with why", async () => {
  // A TCP listener that accepts and never speaks: the WebSocket handshake never completes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c);
  })();
  try {
    const url = `ws://127.0.0.1:${listener.addr.port}`;
    let guard: ReturnType<typeof setTimeout> | undefined;
    const tooLate = new Promise<never>((_, reject) => {
      guard = setTimeout(
        () => reject(new Error("connect neither resolved nor rejected within 10 s")),
        10_000,
      );
    });
    try {
      await assert.rejects(
        () =>
          Promise.race([
            SocpClient.connect(url, { userId: crypto.randomUUID(), key, timeoutMs: 500 }),
            tooLate,
          ]),
        /no answer within 0\.5 s/,
      );
    } finally {
      clearTimeout(guard);
    }
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const c of held) c.close();
  }
});

Deno.test("a client started against nobody retries at the core's backoff until closed, then no timer is left", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close(); // nobody listens there now: every attempt is refused
  const c = await SocpClient.create(`ws://127.0.0.1:${port}`, {
    userId: crypto.randomUUID(),
    key,
    backoffMs: 20,
    maxBackoffMs: 80,
  });
  const waits: number[] = [];
  const four = Promise.withResolvers<void>();
  c.onEvent = (e: ClientEvent) => {
    if (e.kind !== "reconnecting") return;
    waits.push(e.inMs);
    assert.match(e.error ?? "", /cannot connect to ws:\/\/127\.0\.0\.1/);
    if (waits.length === 4) four.resolve();
  };
  c.start();
  const deadline = setTimeout(() => four.reject(new Error(`only ${waits.length} retries`)), 20_000);
  try {
    await four.promise;
  } finally {
    clearTimeout(deadline);
    await c.close();
  }
  assert.deepEqual(waits, [20, 40, 80, 80]);
  // Started again after close (the user asked): it retries again, on its timer.
  const two = Promise.withResolvers<void>();
  c.onEvent = (e: ClientEvent) => {
    if (e.kind === "reconnecting" && ++again === 2) two.resolve();
  };
  let again = 0;
  c.start();
  const deadline2 = setTimeout(
    () => two.reject(new Error(`only ${again} retries after the restart`)),
    20_000,
  );
  try {
    await two.promise;
  } finally {
    clearTimeout(deadline2);
    await c.close();
  }
});
