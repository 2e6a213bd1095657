/**
 * The terminal client (`socp chat`) driven through its stdin as a user would, against a real node: a drop and a
 * reconnect, contacts after a restart, a stopped file transfer reported once, passphrase retries.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import type { PrivateKey } from "../../lib/crypto/rsa.ts";
import { derivesId } from "../../lib/protocol/user_id.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { ScriptedServer } from "../helpers/scripted_server.ts";
import { until, within } from "../helpers/until.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const [aliceKey, bobKey] = await Promise.all(["user5", "user6"].map(fixtureKey));

/** A running `socp chat`, its output collected. */
class Chat {
  out = "";
  err = "";
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly done: Promise<unknown>;

  constructor(args: string[], env: Record<string, string>) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "chat", ...args],
      env: { NO_COLOR: "1", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.writer = child.stdin.getWriter();
    const read = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) add(t);
    };
    this.done = Promise.all([
      read(child.stdout, (t) => this.out += t),
      read(child.stderr, (t) => this.err += t),
    ]);
  }
  readonly child: Deno.ChildProcess;

  async type(text: string): Promise<void> {
    await this.writer.write(new TextEncoder().encode(text));
  }

  wait(what: string | RegExp, ms = 15_000): Promise<true> {
    const hit = () => typeof what === "string" ? this.out.includes(what) : what.test(this.out);
    return until(() => hit(), `chat output ${what}; got:\n${this.out}\n${this.err}`, ms);
  }

  /** Close stdin (Ctrl-D) or type /quit first; the exit code. */
  async end(quit = true): Promise<number> {
    if (quit) await this.type("/quit\n");
    await this.writer.close().catch(() => {});
    const st = await this.child.status;
    await this.done;
    return st.code;
  }
}

async function keyFile(dir: string, name: string, key: PrivateKey, userId: string): Promise<string> {
  const path = join(dir, `${name}.json`);
  Deno.writeTextFileSync(
    path,
    JSON.stringify({
      format: "socp-user-key/1",
      user_id: userId,
      display_name: name,
      pubkey: key.publicKey,
      sealed: await sealPrivateKey(await key.exportPkcs8(), "pw"),
    }),
  );
  return path;
}

async function setup() {
  const dir = Deno.makeTempDirSync({ prefix: "socp-chat-" });
  const ids = { alice: crypto.randomUUID(), bob: crypto.randomUUID() };
  const alicePath = await keyFile(dir, "alice", aliceKey, ids.alice);
  const env = { SOCP_PASSPHRASE: "pw", SOCP_HOME: join(dir, "home") };
  return { dir, ids, alicePath, env };
}

async function bobOnline(url: string, id: string, events: ClientEvent[]): Promise<SocpClient> {
  const bob = await SocpClient.connect(url, { userId: id, key: bobKey, displayName: "bob", backoffMs: 200 });
  events.push(...bob.drainBuffered());
  bob.onEvent = (e) => events.push(e);
  return bob;
}

const dms = (events: ClientEvent[], text: string) => events.filter((e) => e.kind === "dm" && e.text === text);

Deno.test("a drop is said at once; a line typed meanwhile is not echoed as sent, and goes out once after reconnecting", async () => {
  const { dir, ids, alicePath, env } = await setup();
  let node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const port = node.port;
  const got: ClientEvent[] = [];
  const bob = await bobOnline(node.url, ids.bob, got);
  const chat = new Chat(["--server", node.url, "--key", alicePath], env);
  try {
    await chat.wait("connected to");
    await chat.type("/tell bob first\n");
    await chat.wait(/\[\d\d:\d\d:\d\d\] \[to bob\] first\n/);
    await until(() => dms(got, "first").length === 1, "bob gets the first line");

    await node.kill("SIGKILL");
    const killedAt = Date.now();
    await chat.wait("* connection lost", 5000);
    const noticed = Date.now() - killedAt;
    await chat.type("while down\n"); // plain text: to the current conversation (bob)
    await chat.wait("not connected");
    // The chat handles lines in order: once the next line's answer is out, an echo of this one would be too.
    await chat.type("/nonsense\n");
    await chat.wait("! unknown command /nonsense");
    assert.ok(!chat.out.includes("[to bob] while down"), "not echoed as sent while the server is away");
    await chat.wait(/\* reconnecting in 1 s/);

    node = await NodeProcess.start({ dataDir: join(dir, "node"), port });
    await chat.wait("* reconnected", 40_000);
    await chat.wait(/\[\d\d:\d\d:\d\d\] \[to bob\] while down.*\(sent after reconnecting\)/);
    await until(
      () => dms(got, "while down").length === 1,
      "bob gets the line typed while the server was down",
      20_000,
    );
    // A line typed after the reconnect reaches bob after anything resent at the reconnect (one connection, in
    // order): once it is there, a second copy of "while down" would be too.
    await chat.type("/tell bob marker\n");
    await until(() => dms(got, "marker").length === 1, "bob gets the line typed after the reconnect", 20_000);
    assert.equal(dms(got, "while down").length, 1, "exactly once");
    assert.equal(dms(got, "first").length, 1, "a line resent after the reconnect is shown once");
    assert.equal(await chat.end(), 0);
    console.log(`  the drop was reported ${noticed} ms after the node was killed`);
  } finally {
    await bob.close(500);
    await chat.end(false).catch(() => {});
    await node.kill();
  }
});

Deno.test("contacts persist: /tell reaches a known user who is offline, after a restart of the chat", async () => {
  const { dir, ids, alicePath, env } = await setup();
  const node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const got: ClientEvent[] = [];
  let bob = await bobOnline(node.url, ids.bob, got);
  try {
    const first = new Chat(["--server", node.url, "--key", alicePath], env);
    await first.wait("connected to");
    await first.type("/list\n");
    await first.wait(/ {2}bob {2}\S+ {2}@/);
    assert.equal(await first.end(), 0);
    const saved = JSON.parse(Deno.readTextFileSync(join(dir, "home", "contacts", "alice.json")));
    assert.deepEqual(saved.contacts.map((c: { userId: string; name: string }) => [c.userId, c.name]), [[
      ids.bob,
      "bob",
    ]]);
    await bob.close(500);

    const second = new Chat(["--server", node.url, "--key", alicePath], env);
    await second.wait("connected to");
    await second.type("/tell bob are you there\n");
    await second.wait("[to bob] are you there  (offline: it will be delivered when they return)");
    await second.wait("* message to bob: accepted for delivery (queued until they return)");
    await second.type("and this\n"); // the current conversation
    await second.wait("[to bob] and this  (offline: it will be delivered when they return)");
    assert.equal(await second.end(false), 0, "Ctrl-D exits 0");

    bob = await bobOnline(node.url, ids.bob, got);
    await until(
      () => dms(got, "and this").length === 1,
      "bob gets both when he returns",
    );
    assert.equal(dms(got, "are you there").length, 1);
  } finally {
    await bob.close(500);
    await node.kill();
  }
});

Deno.test("/file: a missing file, a file over the limit, and a transfer stopped mid-way each say one line", async () => {
  const { dir, ids, alicePath, env } = await setup();
  const node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const got: ClientEvent[] = [];
  const bob = await bobOnline(node.url, ids.bob, got);
  const chat = new Chat(["--server", node.url, "--key", alicePath], env);
  try {
    await chat.wait("connected to");
    await chat.type(`/file bob ${join(dir, "nope.bin")}\n`);
    await chat.wait(`! no such file: ${join(dir, "nope.bin")}`);

    const big = join(dir, "big.bin");
    const f = Deno.openSync(big, { create: true, write: true });
    f.truncateSync(20 * 1024 * 1024);
    f.close();
    await chat.type(`/file bob ${big}\n`);
    await chat.wait('! "big.bin" is 20 MiB; the limit is 16 MiB');

    // 3 MiB to bob, who leaves once it starts: the server drops the transfer and refuses every chunk after.
    const mid = join(dir, "mid.bin");
    const bytes = new Uint8Array(3 * 1024 * 1024);
    for (let o = 0; o < bytes.length; o += 65536) crypto.getRandomValues(bytes.subarray(o, o + 65536));
    Deno.writeFileSync(mid, bytes);
    await chat.type(`/file bob ${mid}\n`);
    await chat.wait('* sending "mid.bin" (3145728 bytes) to bob...');
    await until(() => got.some((e) => e.kind === "fileStart"), "bob sees the file start");
    await chat.wait('* sending "mid.bin": 10%', 30_000);
    await bob.close(500);
    await chat.wait('! sending "mid.bin" stopped:', 15_000);
    // A DM sent now is answered (ACK: queued for bob) after the server's answers to every chunk sent before it (a
    // connection's frames are answered in order): once the chat says so, any late refusal would be printed too.
    await chat.type("/tell bob after the stop\n");
    await chat.wait("* message to bob: accepted for delivery", 15_000);
    const lines = chat.out.split("\n");
    assert.equal(lines.filter((l) => l.includes("stopped")).length, 1, chat.out);
    assert.equal(lines.filter((l) => l.includes("unknown file_id")).length, 0, chat.out);
    assert.ok(!chat.out.includes('* sent "mid.bin"'));
    assert.equal(await chat.end(), 0);
  } finally {
    await bob.close(500);
    await chat.end(false).catch(() => {});
    await node.kill();
  }
});

Deno.test("passphrase: asked again when wrong (3 tries), confirmed for a new key; no key without a server", async () => {
  const { dir, alicePath } = await setup();
  const node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const env = { SOCP_HOME: join(dir, "home") };
  try {
    const retry = new Chat(["--server", node.url, "--key", alicePath], env);
    await retry.type("bad\nworse\npw\n");
    await retry.wait("connected to");
    assert.equal(await retry.end(), 0);
    assert.equal(retry.err.match(/wrong passphrase; try again/g)?.length, 2, retry.err);

    const three = new Chat(["--server", node.url, "--key", alicePath], env);
    await three.type("a\nb\nc\n");
    assert.equal(await three.end(false), 2);
    assert.match(three.err, /wrong passphrase/);
    assert.ok(!three.out.includes("connected to"));

    const fresh = join(dir, "home", "keys", "carol.json");
    const nowhere = new Chat(["--server", "ws://127.0.0.1:1", "--name", "carol"], env);
    assert.equal(await nowhere.end(false), 1);
    assert.match(nowhere.err, /cannot reach ws:\/\/127\.0\.0\.1:1 .*no key was created/);
    assert.throws(() => Deno.statSync(fresh), Deno.errors.NotFound);

    const made = new Chat(["--server", node.url, "--name", "carol"], env);
    await made.type("short\none-pass1\ntwo-pass2\nsecret-pass\nsecret-pass\n");
    await made.wait("connected to", 60_000);
    assert.match(made.out, /\* created a new key in .*carol\.json \(user id \S+, derived from the key\)/);
    assert.equal(made.err.match(/at least 8 characters; try again/g)?.length, 1, made.err);
    assert.equal(made.err.match(/the two passphrases differ/g)?.length, 1, made.err);
    assert.equal(await made.end(), 0);
    const file = JSON.parse(Deno.readTextFileSync(fresh));
    assert.equal(file.format, "socp-user-key/2", "the metadata is authenticated");
    assert.ok(derivesId(file.pubkey, file.user_id), "a new identity's id is derived from its key");
    const again = new Chat(["--server", node.url, "--name", "carol"], {
      ...env,
      SOCP_PASSPHRASE: "secret-pass",
    });
    await again.wait("connected to");
    assert.equal(await again.end(), 0);
  } finally {
    await node.kill();
  }
});

Deno.test("the first connection must succeed: a refused first hello, or no server, ends the chat (exit 1) and says why", async () => {
  const { alicePath, env } = await setup();
  const srvKey = await fixtureKey("user1");
  let hellos = 0;
  await using server = ScriptedServer.start({
    key: srvKey,
    onFrame: async (f, conn) => {
      if (f.type !== "USER_HELLO") return;
      hellos++;
      await conn.send({
        type: "ERROR",
        from: "srv",
        to: f.from,
        payload: { code: "NAME_IN_USE", detail: "someone else holds this id" },
      });
    },
  });
  const refused = new Chat(["--server", `ws://127.0.0.1:${server.port}`, "--key", alicePath], env);
  assert.equal(await within(refused.end(false), "the refused chat to exit", 30_000), 1);
  assert.match(refused.err, /the server refused us: NAME_IN_USE: someone else holds this id/);
  assert.ok(!refused.out.includes("connected to"), refused.out);
  assert.equal(hellos, 1, "no second hello after a refusal");

  // A key that exists (so no reachability check first) and nothing listening: the first attempt fails.
  const nowhere = new Chat(["--server", "ws://127.0.0.1:1", "--key", alicePath], env);
  assert.equal(await within(nowhere.end(false), "the chat without a server to exit", 30_000), 1);
  assert.match(nowhere.err, /cannot connect to ws:\/\/127\.0\.0\.1:1/);
  assert.ok(!nowhere.out.includes("connected to"), nowhere.out);
});

Deno.test("a scripted server that refuses us after a reconnect (NAME_IN_USE) is a permanent failure: the chat exits non-zero", async () => {
  // A scripted server: the first hello is accepted, the connection then drops; the next hello is refused with
  // NAME_IN_USE (what a server says when it will not let this id in). Our node now lets a newer signed session
  // take over, so the refusal is scripted.
  const { alicePath, env } = await setup();
  const srvKey = await fixtureKey("user1");
  let n = 0;
  const server = ScriptedServer.start({
    key: srvKey,
    onConnection: (conn) => {
      const k = ++n;
      conn.onFrame = async (f) => {
        if (f.type !== "USER_HELLO") return;
        if (k === 1) {
          await conn.send({
            type: "ACK",
            from: "srv",
            to: f.from,
            payload: { msg_ref: "USER_HELLO", server_id: "srv", server_pub: srvKey.publicKey },
          });
          await conn.send({
            type: "USER_ADVERTISE",
            from: "srv",
            to: "*",
            payload: { user_id: f.from, server_id: "srv", pubkey: f.payload.pubkey, meta: {} },
          });
        } else {
          await conn.send({
            type: "ERROR",
            from: "srv",
            to: f.from,
            payload: { code: "NAME_IN_USE", detail: "someone else holds this id" },
          });
        }
      };
    },
  });
  const chat = new Chat(["--server", `ws://127.0.0.1:${server.port}`, "--key", alicePath], env);
  try {
    await chat.wait("connected to");
    server.conns[0].close(1011, "going away");
    await chat.wait("* connection lost");
    let status: Deno.CommandStatus | undefined;
    chat.child.status.then((s) => status = s);
    assert.equal((await until(() => status, "the chat exits after the refusal", 40_000)).code, 1);
    await chat.end(false);
    assert.match(chat.err, /the server refused us: NAME_IN_USE: someone else holds this id/);
    assert.equal(n, 2, "it tried once more, then gave up for good");
  } finally {
    await chat.end(false).catch(() => {});
    await server.close();
  }
});

Deno.test("a server that refuses us after a reconnect is a permanent failure: the chat exits non-zero", async () => {
  const { dir, ids, alicePath, env } = await setup();
  // Another database, where alice's id is bound to someone else's key (PROFILE §16 pins), made first on a port
  // of its own, so the chat cannot reconnect to it before the binding exists.
  let other = await NodeProcess.start({ dataDir: join(dir, "node2") });
  const twin = await SocpClient.connect(other.url, { userId: ids.alice, key: bobKey, reconnect: false });
  await twin.close(500);
  await other.kill();
  let node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const port = node.port;
  const chat = new Chat(["--server", node.url, "--key", alicePath], env);
  try {
    await chat.wait("connected to");
    await node.kill("SIGKILL");
    await chat.wait("* connection lost");
    // The server comes back with that other database: the chat's hello gets BAD_KEY, which retrying cannot fix.
    node = other = await NodeProcess.start({ dataDir: join(dir, "node2"), port });
    let status: Deno.CommandStatus | undefined;
    chat.child.status.then((s) => status = s);
    assert.equal((await until(() => status, "the chat exits after the refusal", 40_000)).code, 1);
    await chat.end(false);
    assert.match(chat.err, /the server refused us: BAD_KEY/);
  } finally {
    await chat.end(false).catch(() => {});
    await node.kill();
  }
});
