/**
 * The transport adapter (lib/net/transport.ts) over loopback: HTTP requests reach the handler with the peer's
 * address, an upgrade gives a Socket that both sides can send on and close, a dial to a port nobody listens on
 * fails (within its give-up time), and a busy port is PortInUse.
 */
import assert from "node:assert/strict";
import {
  clientCloseCode,
  closeReason,
  denoTransport,
  denoTransportWith,
  dialFailure,
  PortInUse,
  type Socket,
} from "../../lib/net/transport.ts";
import { until } from "../helpers/until.ts";

Deno.test("transport: http, accept, dial, send both ways, close is seen by both sides", async () => {
  const received: string[] = [];
  let accepted: Socket | undefined;
  let acceptedClosed = false;
  let httpAddr = "";
  const l = denoTransport.listen({ host: "127.0.0.1", port: 0 }, (req, addr, accept) => {
    if (!accept) {
      httpAddr = addr;
      return new Response("plain " + new URL(req.url).pathname);
    }
    const { socket, response } = accept(30, (s) => {
      accepted = s;
      s.send("welcome");
    });
    socket.onMessage = (d) => received.push(`server got ${d}`);
    socket.onClose = () => acceptedClosed = true;
    return response;
  });
  try {
    assert.ok(l.port > 0);
    const res = await fetch(`http://127.0.0.1:${l.port}/x`, { signal: AbortSignal.timeout(5000) });
    assert.equal(await res.text(), "plain /x");
    assert.equal(httpAddr, "127.0.0.1");

    let dialed: Socket | undefined;
    let failed = "";
    let dialedClosed = false;
    denoTransport.dial(`ws://127.0.0.1:${l.port}/`, 5000, {
      onOpen: (s) => {
        dialed = s;
        s.onMessage = (d) => received.push(`client got ${d}`);
        s.onClose = () => dialedClosed = true;
      },
      onFail: (r) => failed = r,
    });
    const c = await until(() => dialed, "the dial to open", 5000);
    assert.equal(failed, "");
    assert.ok(c.open);
    c.send("hello");
    await until(() => received.length === 2, "both frames", 5000);
    assert.deepEqual(received.sort(), ["client got welcome", "server got hello"]);
    assert.equal(typeof c.bufferedAmount, "number");
    await until(() => accepted, "the accepted socket to open", 5000);
    c.close(1000, "bye");
    await until(() => acceptedClosed && dialedClosed, "both sides to see the close", 5000);
    assert.equal(c.open, false);
    c.send("after close"); // ignored, never throws
    c.close(); // ignored, never throws
  } finally {
    await l.close();
  }
});

Deno.test("transport: a dial to a port nobody listens on fails, and a busy port is PortInUse", async () => {
  const l = denoTransport.listen({ host: "127.0.0.1", port: 0 }, () => new Response("x"));
  const port = l.port;
  try {
    assert.throws(
      () => denoTransport.listen({ host: "127.0.0.1", port }, () => new Response("y")),
      (e) => e instanceof PortInUse && /in use/.test(e.message),
    );
  } finally {
    await l.close();
  }
  let reason = "";
  let opened = false;
  denoTransport.dial(`ws://127.0.0.1:${port}/`, 3000, {
    onOpen: (s) => {
      opened = true;
      s.close();
    },
    onFail: (r) => reason = r,
  });
  await until(() => reason !== "", "the dial to fail", 8000);
  assert.equal(opened, false);
  assert.match(reason, /cannot connect to ws:\/\/127\.0\.0\.1/);
});

Deno.test("dialFailure() says why a TLS dial failed, in words", () => {
  const url = "wss://chat.example:8765";
  const unknown = dialFailure(
    url,
    "NetworkError: failed to connect to WebSocket: invalid peer certificate: UnknownIssuer",
  );
  assert.match(unknown, /not signed by a CA this node trusts \(invalid peer certificate: UnknownIssuer\)/);
  assert.match(unknown, /--ca-cert FILE/);
  const name = dialFailure(
    url,
    'NetworkError: failed to connect to WebSocket: invalid peer certificate: certificate not valid for name "x"',
  );
  assert.match(name, /certificate is for another name/);
  assert.match(dialFailure(url, "invalid peer certificate: Expired"), /expired or not yet valid/);
  assert.equal(dialFailure("ws://127.0.0.1:1", ""), "cannot connect to ws://127.0.0.1:1");
  assert.equal(
    dialFailure(
      "ws://127.0.0.1:1",
      "NetworkError: failed to connect to WebSocket: Connection refused (os error 111)",
    ),
    "cannot connect to ws://127.0.0.1:1: Connection refused (os error 111)",
  );
});

Deno.test("transport: a dialed socket closes with a client close code (PROFILE §15), and the peer sees it", async () => {
  assert.equal(clientCloseCode(undefined), 1000);
  assert.equal(clientCloseCode(1000), 1000);
  assert.equal(clientCloseCode(1001), 4001);
  assert.equal(clientCloseCode(1008), 4008);
  assert.equal(clientCloseCode(1009), 4009);
  assert.equal(clientCloseCode(3005), 3005);
  assert.equal(clientCloseCode(4999), 4999);
  assert.equal(clientCloseCode(5000), 1000);
  assert.equal(new TextEncoder().encode(closeReason("é".repeat(100))).length <= 123, true);
  assert.equal(closeReason("short"), "short");
  let seen: { code: number; reason: string } | undefined;
  // Watch the close from the accepting side through a raw upgrade: the code the peer received.
  const raw = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onclose = (e) => seen = { code: e.code, reason: e.reason };
    return response;
  });
  let closedHere = false;
  try {
    const dialed = await new Promise<Socket>((resolve, reject) =>
      denoTransport.dial(`ws://127.0.0.1:${raw.addr.port}`, 5000, { onOpen: resolve, onFail: reject })
    );
    dialed.onClose = () => closedHere = true;
    dialed.close(1008, "x".repeat(200)); // a server's code and an over-long reason: neither may throw
    await until(() => seen, "the peer to see our close");
    assert.equal(seen!.code, 4008);
    assert.equal(seen!.reason.length, 123);
    await until(() => closedHere, "our side's closed path");
    assert.equal(dialed.open, false);
  } finally {
    await raw.shutdown();
  }
});

Deno.test("transport: a dial nobody answers is given up by its timer, and the timer goes when a dial opens", async () => {
  // Timers the test fires: the give-up time is the dial's own timer, not the test's clock.
  const armed = new Map<number, { fn: () => void; ms: number }>();
  let next = 1;
  const timers = {
    set: (fn: () => void, ms: number) => (armed.set(next, { fn, ms }), next++),
    clear: (h: unknown) => void armed.delete(h as number),
  };
  const transport = denoTransportWith({ timers });
  // A TCP listener that takes the connection and never answers the upgrade.
  const mute = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of mute) held.push(c);
  })();
  try {
    let reason = "";
    transport.dial(`ws://127.0.0.1:${mute.addr.port}/`, 30_000, {
      onOpen: () => assert.fail("nobody answered"),
      onFail: (r) => reason = r,
    });
    assert.deepEqual(
      [...armed.values()].map((t) => t.ms),
      [30_000],
      "one give-up timer, for the dial's time",
    );
    await until(() => held.length === 1, "the TCP connection taken", 5000);
    assert.equal(reason, "", "still connecting before the give-up time");
    const [[h, t]] = [...armed];
    armed.delete(h);
    t.fn(); // the give-up time passes
    await until(() => reason !== "", "the dial to fail once given up", 5000);
    assert.match(reason, /^cannot connect to ws:\/\/127\.0\.0\.1/);
    assert.equal(armed.size, 0);

    // A dial that opens clears its timer.
    const l = denoTransport.listen(
      { host: "127.0.0.1", port: 0 },
      (_req, _addr, accept) => accept!(30, () => {}).response,
    );
    try {
      const s = await new Promise<Socket>((resolve, reject) =>
        transport.dial(`ws://127.0.0.1:${l.port}/`, 30_000, { onOpen: resolve, onFail: reject })
      );
      assert.equal(armed.size, 0, "the give-up timer was cleared when the dial opened");
      let closed = false;
      s.onClose = () => closed = true;
      s.close();
      await until(() => closed, "the socket closed", 5000);
    } finally {
      await l.close();
    }
  } finally {
    mute.close();
    for (const c of held) c.close();
    await accepting.catch(() => {});
    transport.close();
  }
});
