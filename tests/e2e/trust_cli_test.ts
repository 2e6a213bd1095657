/**
 * The terminal client (`socp chat`, a real process driven through stdin) against the attacks of issue 14 on the
 * client side: a lying server substitutes a contact's key (the key-change warning, /tell refused until /trust,
 * a DM signed by the substitute shown as UNVERIFIED), escapes and forged lines in what arrives through a real
 * node, a replay after the client restarts, and a server that answers with another key.
 *
 * The lying server is scripted (tests/helpers/scripted_server.ts): the client's defence is tested on its own,
 * whatever the nodes refuse.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { encryptTo, type PrivateKey } from "../../lib/crypto/rsa.ts";
import { dmPreimage } from "../../lib/protocol/preimages.ts";
import { ChatProcess, writeKeyFile } from "../helpers/chat_process.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { type ScriptedConn, ScriptedServer, signPayload } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import type { Frame } from "../helpers/ws_peer.ts";

const [srvKey, aliceKey, malloryKey, bobKey, eveKey, otherSrvKey] = await Promise.all(
  ["user1", "user2", "user3", "user6", "user5", "user4"].map(fixtureKey),
);
const SRV = "lying-server";
const ALICE = "a11ce000-0000-4000-8000-0000000000a1"; // an older identity: a random id, trusted on first use

function advert(userId: string, pubkey: string, name: string, serverId = SRV): Frame {
  return {
    type: "USER_ADVERTISE",
    from: serverId,
    to: "*",
    payload: { user_id: userId, server_id: serverId, pubkey, meta: { display_name: name } },
  };
}

/** A USER_DELIVER of a DM to `to`, claiming `from`, signed with `key` (the sender's content_sig), at `ts`. */
async function dm(
  to: { id: string; key: PrivateKey },
  from: string,
  key: PrivateKey,
  text: string,
  ts: number,
) {
  const ciphertext = await encryptTo(to.key.publicKey, new TextEncoder().encode(text));
  const content_sig = await key.sign(dmPreimage({ ciphertext, from, to: to.id, ts }));
  return {
    type: "USER_DELIVER",
    from: SRV,
    to: to.id,
    ts,
    payload: { ciphertext, sender: from, sender_pub: key.publicKey, content_sig },
  };
}

/**
 * A server that accepts every hello (signed ACK with its id and key), advertises alice with her real key and the
 * user, then does what the test says on each connection.
 */
function lyingServer(
  then: (conn: ScriptedConn, hello: Frame, n: number) => Promise<void>,
  advertAlice = (_n: number) => true,
): ScriptedServer {
  let n = 0;
  return ScriptedServer.start({
    key: srvKey,
    onConnection: (conn) => {
      const k = ++n;
      conn.onFrame = async (f) => {
        if (f.type !== "USER_HELLO") return;
        await conn.send({
          type: "ACK",
          from: SRV,
          to: f.from,
          payload: { msg_ref: "USER_HELLO", server_id: SRV, server_pub: srvKey.publicKey },
        });
        if (advertAlice(k)) await conn.send(advert(ALICE, aliceKey.publicKey, "alice"));
        await conn.send(advert(f.from, f.payload.pubkey, "bob"));
        await then(conn, f, k);
      };
    },
  });
}

function setup() {
  const dir = Deno.makeTempDirSync({ prefix: "socp-trust-cli-" });
  const env = { SOCP_PASSPHRASE: "passphrase", SOCP_HOME: join(dir, "home") };
  return { dir, env, bobId: crypto.randomUUID() };
}

Deno.test("key substitution: bob's terminal warns, /tell alice is refused until /trust, the impostor's DM is UNVERIFIED", async () => {
  const { dir, env, bobId } = setup();
  const bobPath = await writeKeyFile(dir, "bob", bobKey, bobId);
  const conns: ScriptedConn[] = [];
  const server = lyingServer((conn) => (conns.push(conn), Promise.resolve()));
  const chat = new ChatProcess(["--server", `ws://127.0.0.1:${server.port}`, "--key", bobPath], env);
  try {
    await chat.wait("* alice is online");
    await chat.wait("connected to");
    const conn = await until(() => conns[0], "the hello");
    // While alice is "offline", Mallory says hello elsewhere with alice's id and her own key: it is advertised.
    await conn.send(advert(ALICE, malloryKey.publicKey, "alice", "server-two"));
    await chat.wait("! WARNING: the key of alice changed");
    assert.match(chat.out, /pinned [0-9a-f]{4}(:[0-9a-f]{4}){7}, new [0-9a-f]{4}(:[0-9a-f]{4}){7}/);
    await chat.type("/tell alice the launch code is 1234\n");
    await chat.wait(/! the key of alice changed \(pinned .*\); nothing was sent/);
    // Mallory writes as alice, signing with her own key.
    await conn.send(
      await dm({ id: bobId, key: bobKey }, ALICE, malloryKey, "hi bob, it's alice", Date.now()),
    );
    await chat.wait("[UNVERIFIED — claims to be alice");
    assert.ok(!/\[dm\] alice: hi bob/.test(chat.out), "never under alice's name");
    await chat.type("/verify alice\n");
    await chat.wait("NEW key offered");
    assert.match(chat.out, /\* safety code with alice:\n {4}\d{5}( \d{5}){11}\n/);
    assert.equal(conn.received.filter((f) => f.type === "MSG_DIRECT").length, 0, "nothing left for alice");
    // Bob decides to accept the new key (say alice confirmed it on a call): sending works, to that key.
    await chat.type("/trust alice\n");
    await chat.wait("* accepted the new key of alice");
    await chat.type("/tell alice after the call\n");
    const sent = await conn.waitFor((f) => f.type === "MSG_DIRECT", "the DM after /trust");
    assert.equal(
      new TextDecoder().decode(await malloryKey.decrypt(sent.payload.ciphertext)),
      "after the call",
    );
    assert.equal(await chat.end(), 0);
    const saved = JSON.parse(Deno.readTextFileSync(join(dir, "home", "contacts", "bob.json")));
    const alice = saved.contacts.find((c: { userId: string }) => c.userId === ALICE);
    assert.equal(alice.pubkey, malloryKey.publicKey);
    assert.equal(saved.servers[`ws://127.0.0.1:${server.port}`].pubkey, srvKey.publicKey);
  } finally {
    await chat.end(false).catch(() => {});
    await server.close();
  }
});

Deno.test("a verified contact's key change is a hard stop in the terminal, and survives a restart of the chat", async () => {
  const { dir, env, bobId } = setup();
  const bobPath = await writeKeyFile(dir, "bob", bobKey, bobId);
  // Third connection: alice is not online at all; what blocks is what the contacts file kept.
  const server = lyingServer(async (conn, _hello, n) => {
    if (n === 2) await conn.send(advert(ALICE, malloryKey.publicKey, "alice"));
  }, (n) => n !== 3);
  const url = `ws://127.0.0.1:${server.port}`;
  try {
    const first = new ChatProcess(["--server", url, "--key", bobPath], env);
    await first.wait("* alice is online");
    await first.type("/verify alice yes\n");
    await first.wait("* alice is marked verified");
    assert.equal(await first.end(), 0);
    const second = new ChatProcess(["--server", url, "--key", bobPath], env);
    await second.wait("! STOP: alice was VERIFIED");
    await second.type("/trust alice\n");
    await second.wait(/hard stop.*\/unverify alice, then \/trust alice/);
    await second.type("/tell alice hello\n");
    await second.wait("nothing was sent");
    assert.equal(await second.end(), 0);
    const third = new ChatProcess(["--server", url, "--key", bobPath], env);
    await third.wait("connected to");
    await third.type("/tell alice still blocked?\n");
    await third.wait("nothing was sent"); // the pending change was kept in the contacts file
    assert.equal(await third.end(), 0);
    assert.equal(server.conns.flatMap((c) => c.received).filter((f) => f.type === "MSG_DIRECT").length, 0);
  } finally {
    await server.close();
  }
});

Deno.test("escapes, bidi, zero-width and forged lines from the network are made visible in the terminal (real node)", async () => {
  const { dir, env, bobId } = setup();
  const bobPath = await writeKeyFile(dir, "bob", bobKey, bobId);
  const node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const chat = new ChatProcess(["--server", node.url, "--key", bobPath, "--downloads", join(dir, "dl")], env);
  let eve: SocpClient | undefined;
  try {
    await chat.wait("connected to");
    const got: ClientEvent[] = [];
    eve = await SocpClient.connect(node.url, {
      userId: crypto.randomUUID(),
      key: eveKey,
      displayName: "eve\u202e\u009b2J\u200b",
    });
    eve.onEvent = (e) => got.push(e);
    await until(() => eve!.isOnline(bobId), "eve sees bob");
    const evil =
      "hi\x1b]0;pwned\x07\x1b[2J\rX\u202eevil\u2028\u0085\n[12:00:00] [dm] bob: send me your passphrase\u200b";
    await eve.tell(bobId, evil);
    await chat.wait("send me your passphrase");
    await eve.sendFile(bobId, "re\u202eadme\x1b[2J.txt", new TextEncoder().encode("file"));
    await chat.wait(/\* saved .* to /);
    assert.equal(await chat.end(), 0);
    const out = chat.out;
    for (const c of ["\x1b", "\x07", "\r", "\u202e", "\u2028", "\u200b", "\u009b", "\u0085"]) {
      assert.ok(!out.includes(c), `no raw U+${c.charCodeAt(0).toString(16)} in the output`);
    }
    assert.ok(
      out.includes(
        "hi\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{d}X\\u{202e}evil\\u{2028}\\u{85}\n    | [12:00:00] [dm] bob: send me your passphrase\\u{200b}",
      ),
      out,
    );
    assert.ok(
      !/^\[12:00:00\] \[dm\] bob:/m.test(out),
      "the forged line is a continuation, not a line of ours",
    );
    assert.match(out, /is sending "re\\u\{202e\}adme\\u\{1b\}\[2J\.txt"/);
  } finally {
    await eve?.close(500);
    await chat.end(false).catch(() => {});
    await node.kill();
  }
});

Deno.test("a DM replayed after the chat restarts (verbatim, or with an edited envelope ts) is not shown again", async () => {
  const { dir, env, bobId } = setup();
  const bobPath = await writeKeyFile(dir, "bob", bobKey, bobId);
  let captured: Frame | undefined;
  const server = lyingServer(async (conn, _hello, n) => {
    if (n === 1) {
      captured = await conn.send(
        await dm({ id: bobId, key: bobKey }, ALICE, aliceKey, "transfer 100 to bob", Date.now()),
      );
    } else {
      conn.sendRaw(captured); // verbatim
      await conn.send({ ...captured, ts: captured.ts + 1, sig: undefined }); // envelope edited, re-signed
      await conn.send(await dm({ id: bobId, key: bobKey }, ALICE, aliceKey, "a new message", Date.now()));
    }
  });
  const url = `ws://127.0.0.1:${server.port}`;
  try {
    const first = new ChatProcess(["--server", url, "--key", bobPath], env);
    await first.wait(/\[dm\] alice: transfer 100 to bob\n/);
    assert.equal(await first.end(), 0);
    const seen = Deno.readTextFileSync(join(dir, "home", "contacts", "bob.seen"));
    assert.match(seen, /^[0-9a-f]{32} \d+ v\n$/);
    const second = new ChatProcess(["--server", url, "--key", bobPath], env);
    await second.wait(/\[dm\] alice: a new message\n/); // handled after both replays (frames are in order)
    assert.equal(await second.end(), 0);
    assert.ok(!second.out.includes("transfer 100"), second.out);
  } finally {
    await server.close();
  }
});

Deno.test("a server that answers with another key than the one pinned at first contact is announced loudly", async () => {
  const { dir, env, bobId } = setup();
  const bobPath = await writeKeyFile(dir, "bob", bobKey, bobId);
  let n = 0;
  const server = ScriptedServer.start({
    key: srvKey,
    onConnection: (conn) => {
      const key = ++n === 1 ? srvKey : otherSrvKey;
      conn.onFrame = async (f) => {
        if (f.type !== "USER_HELLO") return;
        const payload = { msg_ref: "USER_HELLO", server_id: SRV, server_pub: key.publicKey };
        conn.sendRaw({
          type: "ACK",
          from: SRV,
          to: f.from,
          ts: Date.now(),
          payload,
          sig: await signPayload(key, payload),
        });
        const ad = advert(f.from, f.payload.pubkey, "bob").payload;
        conn.sendRaw({
          ...advert(f.from, "", "bob"),
          payload: ad,
          ts: Date.now(),
          sig: await signPayload(key, ad),
        });
      };
    },
  });
  const url = `ws://127.0.0.1:${server.port}`;
  try {
    const first = new ChatProcess(["--server", url, "--key", bobPath], env);
    await first.wait("* pinned the server's key at first contact");
    assert.equal(await first.end(), 0);
    const second = new ChatProcess(["--server", url, "--key", bobPath], env);
    await second.wait(`! WARNING: the server at ${url} presents another key`);
    await second.type("/trust-server\n");
    await second.wait("* the server's key");
    assert.equal(await second.end(), 0);
    const saved = JSON.parse(Deno.readTextFileSync(join(dir, "home", "contacts", "bob.json")));
    assert.equal(saved.servers[url].pubkey, otherSrvKey.publicKey);
  } finally {
    await server.close();
  }
});

Deno.test("a newer session of the same identity takes over: the chat says so and exits instead of taking it back (real node)", async () => {
  const { dir, env, bobId } = setup();
  const bobPath = await writeKeyFile(dir, "bob", bobKey, bobId);
  const node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const chat = new ChatProcess(["--server", node.url, "--key", bobPath], env);
  let twin: SocpClient | undefined;
  try {
    await chat.wait("connected to");
    let status: Deno.CommandStatus | undefined;
    chat.child.status.then((s) => status = s);
    twin = await SocpClient.connect(node.url, { userId: bobId, key: bobKey, reconnect: false });
    assert.equal((await until(() => status, "the chat exits on its own", 20_000)).code, 1);
    await chat.end(false);
    assert.match(
      chat.err,
      /signed in elsewhere: a newer session of this identity took over this one.*not reconnecting/,
    );
    assert.ok(twin.connected, "the newer session stays");
  } finally {
    await twin?.close(500);
    await chat.end(false).catch(() => {});
    await node.kill();
  }
});
