/**
 * Composition by injection (lib/net/create_node.ts): a node made of a transport, timers and a clock that the test
 * holds, over the default store in memory. No socket, no file, no runtime timer: the test answers HTTP through the
 * transport's handler and drives the clock's tick by hand.
 */
import assert from "node:assert/strict";
import { createNode } from "../../lib/net/create_node.ts";
import type { Timers } from "../../lib/net/executor.ts";
import type { Handler, Transport } from "../../lib/net/transport.ts";
import { fixtureKey } from "../helpers/keys.ts";

/** Timers the test fires by hand. */
class ManualTimers implements Timers {
  private next = 1;
  readonly armed = new Map<number, { fn: () => void; ms: number }>();
  set(fn: () => void, ms: number): unknown {
    const h = this.next++;
    this.armed.set(h, { fn, ms });
    return h;
  }
  clear(handle: unknown): void {
    this.armed.delete(handle as number);
  }
  /** Run every timer armed for `ms` (the ones they arm in turn wait for the next call). */
  fire(ms: number): number {
    const due = [...this.armed].filter(([, t]) => t.ms === ms);
    for (const [h, t] of due) {
      this.armed.delete(h);
      t.fn();
    }
    return due.length;
  }
}

/** A transport that listens nowhere: the test calls the handler; dials fail. */
function memoryTransport() {
  let handler: Handler | undefined;
  const stopped = Promise.withResolvers<void>();
  const transport: Transport = {
    listen: (_opts, h) => {
      handler = h;
      return { port: 4242, close: () => (stopped.resolve(), stopped.promise), finished: stopped.promise };
    },
    dial: (_url, _ms, on) => on.onFail("no network here"),
  };
  const get = async (path: string) => {
    const res = await handler!(new Request(`http://127.0.0.1:4242${path}`), "127.0.0.1");
    return await res.json();
  };
  return { transport, get };
}

Deno.test("createNode runs on an injected transport, timers and clock, over a store in memory", async () => {
  const { transport, get } = memoryTransport();
  const timers = new ManualTimers();
  let now = 1_700_000_000_000;
  const lines: string[] = [];
  const node = await createNode({
    key: await fixtureKey("user6"),
    transport,
    timers,
    clock: () => now,
    host: "127.0.0.1",
    port: 0,
    logSink: (l) => lines.push(l),
  });
  assert.equal(node.port, 4242, "the port is the transport's");
  const wk = await get("/.well-known/socp");
  assert.equal(wk.server_id, node.serverId);
  assert.equal(wk.pubkey, node.publicKey);
  assert.equal((await get("/healthz")).status, "ok");

  // The clock ticks through the injected timers: one timer armed at a time, armed again after each tick.
  const tickMs = [...timers.armed.values()].map((t) => t.ms);
  assert.equal(tickMs.length, 1, `one timer armed (${tickMs})`);
  for (let i = 0; i < 3; i++) {
    now += tickMs[0];
    assert.equal(timers.fire(tickMs[0]), 1);
    assert.equal(timers.armed.size, 1, "the tick armed its next one");
  }
  assert.ok(lines.some((l) => /node\.listening/.test(l)));

  await node.close();
  assert.equal(timers.armed.size, 0, "a stopped node leaves no timer armed");
  await node.finished;
});
