/**
 * Composition by injection (lib/net/create_node.ts): a node made of a transport, timers and a clock that the test
 * holds, over the default store in memory. No network, no file, no runtime timer: the test answers HTTP and
 * WebSocket upgrades through the transport's handler and fires the timers by hand.
 */
import assert from "node:assert/strict";
import { DEFAULT_LIMITS } from "../../lib/core/types.ts";
import { createNode, type NodeParts } from "../../lib/net/create_node.ts";
import type { Timers } from "../../lib/net/executor.ts";
import type { Handler, Socket, Transport } from "../../lib/net/transport.ts";
import { fixtureChannelParts, fixtureKey } from "../helpers/keys.ts";
import { until } from "../helpers/until.ts";

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

/** A socket the test holds: what the node sent, and whether it closed. */
class TestSocket implements Socket {
  readonly sent: string[] = [];
  open = true;
  readonly bufferedAmount = 0;
  closedWith: number | undefined;
  onMessage: (data: unknown) => void = () => {};
  onClose: () => void = () => {};
  send(text: string): void {
    if (this.open) this.sent.push(text);
  }
  close(code = 1000): void {
    if (!this.open) return;
    this.open = false;
    this.closedWith = code;
    this.onClose();
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
  /** A WebSocket connection from `addr`, opened at once. */
  const connect = async (addr = "127.0.0.1") => {
    const socket = new TestSocket();
    await handler!(new Request("http://127.0.0.1:4242/"), addr, (_idle, onOpen) => {
      queueMicrotask(() => onOpen(socket));
      return { socket, response: new Response(null) };
    });
    await Promise.resolve();
    return socket;
  };
  return { transport, get, connect };
}

const T0 = 1_700_000_000_000;

/** A node on the memory transport, with timers and a clock the test holds. */
async function testNode(over: Partial<NodeParts> = {}) {
  const net = memoryTransport();
  const timers = new ManualTimers();
  const clock = { now: T0 };
  const lines: string[] = [];
  const node = await createNode({
    key: await fixtureKey("user6"),
    transport: net.transport,
    timers,
    clock: () => clock.now,
    host: "127.0.0.1",
    port: 0,
    logSink: (l) => lines.push(l),
    ...await fixtureChannelParts(),
    ...over,
  });
  return { node, timers, clock, lines, ...net, [Symbol.asyncDispose]: () => node.close() };
}

Deno.test("createNode runs on an injected transport, timers and clock, over a store in memory", async () => {
  await using t = await testNode();
  const { node, get, timers, lines } = t;
  assert.equal(node.port, 4242, "the port is the transport's");
  const wk = await get("/.well-known/socp");
  assert.equal(wk.server_id, node.serverId);
  assert.equal(wk.pubkey, node.publicKey);
  assert.equal((await get("/healthz")).status, "ok");
  assert.ok(lines.some((l) => /node\.listening/.test(l)));
  // Deadlines, not polling: a node alone with nobody connected has nothing to do until an event comes.
  assert.equal(timers.armed.size, 0, "no timer armed while nothing is pending");

  await node.close();
  assert.equal(timers.armed.size, 0, "a stopped node leaves no timer armed");
  await node.finished;
});

Deno.test("the clock is one timer armed at the reducer's next deadline, and its tick fires the rule", async () => {
  await using t = await testNode();
  const { timers, clock, connect } = t;
  const socket = await connect();
  // The connection's first-frame timeout is the only pending rule: it fires once `firstFrameMs` have passed.
  const deadline = DEFAULT_LIMITS.firstFrameMs + 1;
  assert.deepEqual([...timers.armed.values()].map((x) => x.ms), [deadline], "one timer, at the deadline");

  // A second connection later has a later deadline: the timer stays as it is.
  clock.now += 1000;
  const second = await connect("127.0.0.2");
  assert.deepEqual([...timers.armed.values()].map((x) => x.ms), [deadline], "still one timer, not moved");

  clock.now = T0 + deadline;
  assert.equal(timers.fire(deadline), 1);
  await until(() => socket.closedWith !== undefined, "the silent connection is closed at its deadline");
  assert.equal(socket.closedWith, 1008);
  assert.match(socket.sent.join("\n"), /"code":"TIMEOUT"/);
  assert.equal(second.closedWith, undefined, "the later connection is not due yet");
  // Re-armed for the second connection's deadline, 1 s later.
  await until(() => [...timers.armed.values()].some((x) => x.ms === 1000), "armed for the next deadline");
  clock.now += 1000;
  assert.equal(timers.fire(1000), 1);
  await until(() => second.closedWith !== undefined, "the second connection times out at its own deadline");
});

Deno.test("the idle hook runs once the node has been quiet for its time, with one timer per quiet spell", async () => {
  let ran = 0;
  await using t = await testNode({ onIdle: { afterMs: 2000, run: () => ran++ } });
  const { timers, clock, connect } = t;
  const socket = await connect();
  const idle = () => [...timers.armed.values()].filter((x) => x.ms === 2000).length;
  assert.equal(idle(), 1, "a step arms the idle timer");
  await connect("127.0.0.2");
  assert.equal(idle(), 1, "only one");
  // The first connection's frame is still on its way when the timer runs out: busy, so it is armed again.
  socket.onMessage("not json");
  await until(() => socket.sent.length > 0, "the node answers the bad frame");
  clock.now += 2000;
  assert.equal(timers.fire(2000), 1);
  assert.equal(ran, 0, "not quiet: frames moved since the timer was armed");
  assert.equal(idle(), 1, "armed again");
  clock.now += 2000;
  assert.equal(timers.fire(2000), 1);
  assert.equal(ran, 1, "quiet for 2 s: the hook ran");
  assert.equal(idle(), 0, "and waits for the next step");
});

Deno.test("the bytes hook runs once per budget of frame bytes in or out, after a step", async () => {
  let ran = 0;
  await using t = await testNode({ onBytes: { bytes: 4096, run: () => ran++ } });
  const socket = await t.connect();
  // Three frames of ~1.5 KB each (refused: not JSON) plus the node's answers: the first budget passes on the third.
  const junk = "x".repeat(1500);
  socket.onMessage(junk);
  await until(() => socket.sent.length >= 1, "the first answer");
  socket.onMessage(junk);
  await until(() => socket.sent.length >= 2, "the second answer");
  assert.equal(ran, 0, "under 4,096 bytes so far");
  socket.onMessage(junk);
  await until(() => socket.sent.length >= 3, "the third answer");
  assert.equal(ran, 1, "4,500 bytes received: the hook ran once");
});
