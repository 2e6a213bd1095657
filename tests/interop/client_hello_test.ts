/**
 * Our real client (SocpClient) over a real socket against scripted servers that answer USER_HELLO in each of the
 * deployed ways (PROFILE §15, issue 8 item 1), frame for frame as observed, and one that closes on an empty `to`.
 * Each asserts what the user sees: connected, the server id learnt, and a signed DM that reaches the server.
 */
import assert from "node:assert/strict";
import { HelloRefused, SocpClient } from "../../lib/client/client.ts";
import { signaturePreimages } from "../../lib/protocol/canonical_json.ts";
import { verifySignature } from "../../lib/crypto/rsa.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { until } from "../helpers/until.ts";

// deno-lint-ignore no-explicit-any
type Frame = any;

const ME = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const [meKey, srvKey, bobKey] = await Promise.all(["user1", "user2", "user3"].map(fixtureKey));

/** A scripted server: `answer` decides what follows each frame it receives. */
function scripted(answer: (f: Frame, send: (f: Frame) => void, ws: WebSocket) => void | Promise<void>) {
  const got: Frame[] = [];
  const sockets = new Set<WebSocket>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    sockets.add(socket);
    socket.onclose = () => sockets.delete(socket);
    socket.onmessage = async (e) => {
      const f = JSON.parse(String(e.data));
      got.push(f);
      await answer(f, (out) => socket.send(JSON.stringify(out)), socket);
    };
    return response;
  });
  return {
    url: `ws://127.0.0.1:${server.addr.port}`,
    got,
    /** `await using`: close every socket and stop listening. */
    async [Symbol.asyncDispose]() {
      for (const s of sockets) s.close();
      await server.shutdown();
    },
  };
}

async function signedBy(f: Frame): Promise<Frame> {
  return { ...f, sig: await srvKey.sign(signaturePreimages(f.payload)[0]) };
}

function bobAdvert(from: string): Frame {
  return {
    type: "USER_ADVERTISE",
    from,
    to: "*",
    ts: Date.now(),
    payload: { user_id: BOB, server_id: from, pubkey: bobKey.publicKey, meta: { display_name: "bob" } },
  };
}

/**
 * Connect, DM bob, and check what the server received (a signed MSG_DIRECT) and what the client learnt. The hello
 * was accepted by the server's answer, not by the 3 s silence rule, when the client learnt the server id from it
 * (`serverId`; silence leaves it ""). `connected` is called once the hello is accepted.
 */
async function talk(s: ReturnType<typeof scripted>, serverId: string, connected?: () => void) {
  const c = await SocpClient.connect(s.url, { userId: ME, key: meKey, displayName: "me", reconnect: false });
  await using _ = { [Symbol.asyncDispose]: () => c.close(500) };
  connected?.();
  assert.equal(c.serverId, serverId, serverId ? "accepted by the server's answer" : "accepted by silence");
  const hello = s.got.find((f) => f.type === "USER_HELLO");
  assert.equal(hello.to, "*", "server id unknown before the hello: '*'");
  assert.ok(await verifySignature(meKey.publicKey, signaturePreimages(hello.payload)[0], hello.sig));
  await until(() => c.isOnline(BOB), "bob online");
  const m = await c.tell("bob", "hello over there");
  assert.equal(m.state, "sent");
  const dm = await until(() => s.got.find((f) => f.type === "MSG_DIRECT"), "the DM reaches the server");
  assert.ok(dm.sig, "user frames are signed (PROFILE §15)");
  assert.ok(await verifySignature(meKey.publicKey, signaturePreimages(dm.payload)[0], dm.sig));
  assert.equal(new TextDecoder().decode(await bobKey.decrypt(dm.payload.ciphertext)), "hello over there");
}

Deno.test("hello answered our way: signed ACK {msg_ref:USER_HELLO, server_id, server_pub} and the snapshot", async () => {
  await using s = scripted(async (f, send) => {
    if (f.type !== "USER_HELLO") return;
    send(
      await signedBy({
        type: "ACK",
        from: "srv-a",
        to: f.from,
        ts: Date.now(),
        payload: { msg_ref: "USER_HELLO", server_id: "srv-a", server_pub: srvKey.publicKey },
      }),
    );
    send(await signedBy(bobAdvert("srv-a")));
    send(
      await signedBy({
        type: "USER_ADVERTISE",
        from: "srv-a",
        to: "*",
        ts: Date.now(),
        payload: { user_id: f.from, server_id: "srv-a", pubkey: f.payload.pubkey, meta: f.payload.meta },
      }),
    );
  });
  await talk(s, "srv-a");
});

Deno.test("hello answered with ACK {msg_ref:USER_HELLO_OK, server_pub} + CLIENT_WELCOME {server_id}", async () => {
  await using s = scripted((f, send) => {
    if (f.type !== "USER_HELLO") return;
    send({
      type: "ACK",
      from: "srv-b",
      to: f.from,
      ts: Date.now(),
      payload: { msg_ref: "USER_HELLO_OK", server_pub: srvKey.publicKey },
      sig: "",
    });
    send({
      type: "CLIENT_WELCOME",
      from: "srv-b",
      to: f.from,
      ts: Date.now(),
      payload: { server_id: "srv-b-id" },
      sig: "",
    });
    send({ ...bobAdvert("srv-b-id"), sig: "" });
  });
  await talk(s, "srv-b-id");
});

Deno.test("hello answered with ACK {message:'Welcome to the chat!'} from 'server'", async () => {
  await using s = scripted((f, send) => {
    if (f.type !== "USER_HELLO") return;
    send({
      type: "ACK",
      from: "server",
      to: f.from,
      ts: Date.now(),
      payload: { message: "Welcome to the chat!" },
    });
    send({ ...bobAdvert("server"), sig: "" });
  });
  await talk(s, "server");
});

Deno.test("hello answered with nothing at all: accepted after 3 s without an ERROR", async () => {
  let hellos = 0;
  let tellBob = () => {};
  await using s = scripted((f, send) => {
    if (f.type !== "USER_HELLO") return;
    hellos++;
    // It says nothing to the hello, but does tell about bob later (once our client took the silence as a yes).
    tellBob = () => send({ ...bobAdvert("quiet"), sig: "" });
  });
  await talk(s, "", () => tellBob());
  assert.equal(hellos, 1);
});

Deno.test("a server that closes on an empty `to` accepts ours ('*'); its refusal would be a clear error", async () => {
  await using s = scripted((f, send, ws) => {
    if (f.type !== "USER_HELLO") return;
    if (!f.to) {
      send({
        type: "ERROR",
        from: "server",
        to: f.from,
        ts: Date.now(),
        payload: { code: "UNKNOWN_TYPE", detail: "Invalid 'to' field" },
      });
      ws.close();
      return;
    }
    send({
      type: "ACK",
      from: "server",
      to: f.from,
      ts: Date.now(),
      payload: { message: "Welcome to the chat!" },
    });
    send({ ...bobAdvert("server"), sig: "" });
  });
  await talk(s, "server");
  // And a server that refuses the hello: one clear error, no retry.
  let hellos = 0;
  await using r = scripted((f, send, ws) => {
    if (f.type !== "USER_HELLO") return;
    hellos++;
    send({
      type: "ERROR",
      from: "server",
      to: f.from,
      ts: Date.now(),
      payload: { code: "UNKNOWN_TYPE", detail: "Invalid 'to' field" },
    });
    ws.close();
  });
  await assert.rejects(
    () => SocpClient.connect(r.url, { userId: ME, key: meKey }),
    (e) => e instanceof HelloRefused && e.message === "UNKNOWN_TYPE: Invalid 'to' field",
  );
  // No retry: the refused client holds no timer and no socket now (this test keeps Deno's op and resource
  // sanitizers on, so a reconnect timer or a new WebSocket left behind fails it), and it sent one hello.
  assert.equal(hellos, 1, "no retry after a refusal");
});
