/**
 * The public channel, files and store-and-forward on three real nodes (issue 4).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { encryptTo, sha256Hex } from "../../lib/crypto/rsa.ts";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until as waitUntil } from "../helpers/until.ts";
import { sleep } from "../helpers/ws_peer.ts";

const until = <T>(f: Parameters<typeof waitUntil<T>>[0], what: string, ms = 15_000) => waitUntil(f, what, ms);
const opts = { sanitizeOps: false, sanitizeResources: false };
const TIMERS = ["--heartbeat-interval", "0.25", "--link-timeout", "1.5"];
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

const n1 = await NodeProcess.start({ args: TIMERS });
const wk = await (await fetch(`${n1.http}/.well-known/socp`)).json();
const BOOT = ["--bootstrap", `127.0.0.1:${n1.port}#${wk.pubkey}`];
const n2 = await NodeProcess.start({ args: [...BOOT, ...TIMERS] });
const n3dir = Deno.makeTempDirSync({ prefix: "socp-e2e-f3-" });
let n3 = await NodeProcess.start({ dataDir: n3dir, args: [...BOOT, ...TIMERS] });
for (const n of [n1, n2, n3]) {
  await until(async () => (await (await fetch(`${n.http}/healthz`)).json()).servers_linked === 2, "mesh");
}

const ids = {
  ann: "a11ce000-0000-4000-8000-00000000f001",
  abe: "a11ce000-0000-4000-8000-00000000f002",
  ben: "b0b00000-0000-4000-8000-00000000f003",
  cat: "ca201000-0000-4000-8000-00000000f004",
  dan: "da4e0000-0000-4000-8000-00000000f005",
  eve: "e0e00000-0000-4000-8000-00000000f006",
};
const keys = Object.fromEntries(
  await Promise.all(
    [["ann", "user1"], ["abe", "user2"], ["ben", "user3"], ["cat", "user4"], ["dan", "user5"], [
      "eve",
      "user6",
    ]].map(async (
      [n, k],
    ) => [n, await fixtureKey(k)]),
  ),
);

interface Session {
  c: SocpClient;
  events: ClientEvent[];
}

async function login(node: NodeProcess, name: keyof typeof ids): Promise<Session> {
  const c = await SocpClient.connect(node.url, { userId: ids[name], key: keys[name], displayName: name });
  const events = c.drainBuffered();
  c.onEvent = (e) => events.push(e);
  await until(() => c.hasChannel, `${name} gets the channel key`);
  return { c, events };
}

const ann = await login(n1, "ann");
const abe = await login(n1, "abe");
const ben = await login(n2, "ben");
let cat = await login(n3, "cat");
await until(() => [ann, abe, ben, cat].every((s) => s.c.list().length >= 4), "everyone sees everyone");

Deno.test({
  name: "/all from a user on node 1 is received once by users on nodes 1, 2 and 3, verified",
  ...opts,
}, async () => {
  await ann.c.all("hello, network");
  for (const s of [abe, ben, cat]) {
    await until(() => s.events.some((e) => e.kind === "public"), `${s.c.displayName} gets it`);
  }
  await sleep(500);
  for (const s of [abe, ben, cat]) {
    const got = s.events.filter((e) => e.kind === "public");
    assert.equal(got.length, 1, `${s.c.displayName} got it once`);
    assert.ok(
      got[0].kind === "public" && got[0].text === "hello, network" && got[0].verified &&
        got[0].fromName === "ann",
    );
  }
  assert.equal(ann.events.filter((e) => e.kind === "public").length, 0, "not echoed to the sender");
});

Deno.test({ name: "a 1 MiB file crosses two servers intact, with progress", ...opts }, async () => {
  const data = new Uint8Array(1024 * 1024).map((_, i) => (i * 2654435761) >>> 24);
  const t0 = performance.now();
  await ben.c.sendFile("cat", "big.bin", data);
  const file = await until(() => cat.events.find((e) => e.kind === "file"), "the file", 120_000);
  const secs = (performance.now() - t0) / 1000;
  assert.ok(file.kind === "file" && file.bytes, `file arrived: ${file.kind === "file" && file.problem}`);
  assert.equal(await sha256Hex(file.bytes!), await sha256Hex(data));
  assert.ok(file.verified, "FILE_START content_sig verified");
  const progress = cat.events.filter((e) => e.kind === "fileProgress");
  assert.ok(progress.length >= 5, `progress reported ${progress.length} times`);
  await until(
    () => ben.events.some((e) => e.kind === "ack" && e.what?.startsWith("file big.bin")),
    "the sender's ACK",
  );
  console.log(`  1 MiB across two servers: ${secs.toFixed(1)} s (${(1 / secs).toFixed(3)} MiB/s)`);
});

Deno.test({
  name:
    "a DM to an offline user on another node arrives when they return, also across a restart of their node",
  ...opts,
}, async () => {
  await cat.c.close();
  await until(() => !ann.c.isOnline(ids.cat), "cat offline");
  await ann.c.tell("cat", "while you were away");
  await until(() => ann.events.some((e) => e.kind === "ack" && e.what === "message to cat"), "accepted");
  cat = await login(n3, "cat");
  const first = await until(() => cat.events.find((e) => e.kind === "dm"), "queued DM");
  assert.ok(first.kind === "dm" && first.text === "while you were away" && first.verified);

  // Again, and this time cat's node is killed and restarted before cat comes back.
  await cat.c.close();
  await until(() => !ann.c.isOnline(ids.cat), "cat offline again");
  await ann.c.tell("cat", "across a restart");
  await until(
    () => ann.events.filter((e) => e.kind === "ack" && e.what === "message to cat").length === 2,
    "accepted again",
  );
  await sleep(300);
  await n3.kill("SIGKILL");
  n3 = await NodeProcess.start({ dataDir: n3dir, args: [...BOOT, ...TIMERS] });
  await until(
    async () => (await (await fetch(`${n3.http}/healthz`)).json()).servers_linked === 2,
    "n3 back in the mesh",
  );
  cat = await login(n3, "cat");
  const second = await until(() => cat.events.find((e) => e.kind === "dm"), "DM after restart");
  assert.ok(second.kind === "dm" && second.text === "across a restart" && second.verified);
  await sleep(500);
  assert.equal(cat.events.filter((e) => e.kind === "dm").length, 1, "delivered once");
});

Deno.test({ name: "a hostile file name is saved sanitised by `socp chat`", ...opts }, async () => {
  const dir = Deno.makeTempDirSync();
  const downloads = join(dir, "inbox");
  const keyPath = join(dir, "dan.json");
  Deno.writeTextFileSync(
    keyPath,
    JSON.stringify({
      format: "socp-user-key/1",
      user_id: ids.dan,
      display_name: "dan",
      pubkey: keys.dan.publicKey,
      sealed: await sealPrivateKey(await keys.dan.exportPkcs8(), "pw"),
    }),
  );
  const chat = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "chat", "--server", n2.url, "--key", keyPath, "--downloads", downloads],
    env: { SOCP_PASSPHRASE: "pw", NO_COLOR: "1", SOCP_HOME: join(dir, "home") },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const reader = chat.stdout.pipeThrough(new TextDecoderStream()).getReader();
  (async () => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) out += r.value;
  })();
  await until(() => ann.c.isOnline(ids.dan) && out.includes("connected to"), "dan online");
  const content = new TextEncoder().encode("not your passwd");
  await ann.c.sendFile("dan", "../../etc/pa\u0007ss\nwd", content);
  await until(() => out.includes("* saved"), "the chat saved the file", 20_000);
  assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["dan.json", "home", "inbox"]);
  assert.equal(Deno.readTextFileSync(join(downloads, "passwd")), "not your passwd");
  assert.match(out, /receiving "\.\.\/\.\.\/etc\/pa.*": 100%/s);
  // A file whose announced SHA-256 is wrong: refused, and the sender is told why (both ends).
  const bad = new TextEncoder().encode("tampered");
  const fileId = crypto.randomUUID();
  await ann.c.send("FILE_START", ids.dan, {
    file_id: fileId,
    name: "x.bin",
    size: bad.length,
    sha256: "0".repeat(64),
    mode: "dm",
  });
  await ann.c.send("FILE_CHUNK", ids.dan, {
    file_id: fileId,
    index: 0,
    ciphertext: await encryptTo(keys.dan.publicKey, bad),
  });
  await ann.c.send("FILE_END", ids.dan, { file_id: fileId });
  await until(() => out.includes('refused "x.bin"'), "the chat refuses the file");
  assert.match(out, /! refused "x\.bin" from ann: SHA-256 does not match/);
  const told = await until(
    () => ann.events.find((e) => e.kind === "dm" && e.text.startsWith("[auto]")),
    "the sender is told",
  );
  assert.ok(told.kind === "dm" && told.text.includes("SHA-256 does not match") && told.verified);
  const w = chat.stdin.getWriter();
  await w.write(new TextEncoder().encode("/quit\n"));
  await w.close();
  assert.equal((await chat.status).code, 0);
});

Deno.test(
  { name: "a user who joins later gets the channel key and reads new public messages", ...opts },
  async () => {
    const late = await login(n2, "eve"); // new to the network; login() waits for the channel key
    await abe.c.all("for the latecomer too");
    const got = await until(() => late.events.find((e) => e.kind === "public"), "dan reads /all");
    assert.ok(got.kind === "public" && got.text === "for the latecomer too" && got.verified);
    await late.c.close();
  },
);

Deno.test({ name: "/file all sends a file to everyone on the public channel", ...opts }, async () => {
  const data = new TextEncoder().encode("shared notes\n".repeat(500));
  await ben.c.sendFile("public", "notes.txt", data);
  for (const s of [ann, abe, cat]) {
    const f = await until(
      () => s.events.find((e) => e.kind === "file" && e.name === "notes.txt"),
      `${s.c.displayName} gets the file`,
    );
    assert.ok(f.kind === "file" && f.bytes && f.mode === "public" && f.verified);
    assert.equal(await sha256Hex(f.bytes!), await sha256Hex(data));
  }
});

Deno.test({ name: "stop the nodes", ...opts }, async () => {
  for (const s of [ann, abe, ben, cat]) await s.c.close(200);
  for (const n of [n1, n2, n3]) await n.kill();
});
