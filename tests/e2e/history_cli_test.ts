/**
 * The terminal's history (issue 15), driven through stdin with real `socp chat` processes against a real node:
 * DMs and public messages kept across a restart and shown in send order when switching with /open, paging with
 * /more, unread counts in the /open list, no plaintext in the file, a corrupt tail skipped, /forget of one
 * conversation and of all (each after a y/N question).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { SocpClient } from "../../lib/client/client.ts";
import { deriveUserId } from "../../lib/protocol/user_id.ts";
import { ChatProcess, writeKeyFile } from "../helpers/chat_process.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";

const [aliceKey, bobKey, carolKey] = await Promise.all(["user5", "user6", "user4"].map(fixtureKey));

/** The part of `out` after the last occurrence of `marker`. */
function after(out: string, marker: string): string {
  const i = out.lastIndexOf(marker);
  assert.ok(i >= 0, `"${marker}" in:\n${out}`);
  return out.slice(i + marker.length);
}

/** Positions of `texts` in `out`, which must be increasing (send order). */
function inOrder(out: string, texts: string[]): void {
  let at = -1;
  for (const t of texts) {
    const i = out.indexOf(t, at + 1);
    assert.ok(i > at, `"${t}" after position ${at} in:\n${out}`);
    at = i;
  }
}

Deno.test("chat history: kept across a restart, /open in send order, /more, unread, no plaintext on disk, corrupt tail, /forget", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "socp-hist-e2e-" });
  const node = await NodeProcess.start({ dataDir: join(dir, "node") });
  const home = { SOCP_PASSPHRASE: "passphrase", SOCP_HOME: join(dir, "home") };
  const alicePath = await writeKeyFile(dir, "alice", aliceKey, deriveUserId(aliceKey.publicKey)!);
  const bobPath = await writeKeyFile(dir, "bob", bobKey, deriveUserId(bobKey.publicKey)!);
  const args = (key: string) => ["--server", node.url, "--key", key];
  const bob = new ChatProcess(args(bobPath), home);
  let alice = new ChatProcess(args(alicePath), home);
  try {
    await Promise.all([bob.wait("connected to"), alice.wait("connected to")]);
    await alice.wait("* bob");
    await alice.type("/tell bob one secret-word-xq7\n");
    await bob.wait("one secret-word-xq7");
    await bob.type("/tell alice two-words-zq9\n");
    await alice.wait("[dm] alice".replace("alice", "bob")); // bob's DM arrives
    await alice.type("/all hello everyone\n");
    await bob.wait("hello everyone");
    // 25 more, typed in one go, to the current conversation (the public channel now): then back to bob.
    await alice.type("/tell bob\n" + Array.from({ length: 25 }, (_, i) => `p${i + 1}-line\n`).join(""));
    await alice.wait("[to bob] p25-line");
    await bob.wait("p25-line");
    assert.equal(await alice.end(), 0);

    const hdir = join(dir, "home", "history", "alice");
    const log = Deno.readTextFileSync(join(hdir, "history.log"));
    assert.ok(log.split("\n").filter(Boolean).length >= 28, "every message is a record");
    // Words long enough (or quoted) not to turn up in base64url text by chance (a bare "two" did once in CI).
    for (const word of ["secret-word-xq7", "p25-line", "hello everyone", "two-words-zq9", '"bob"']) {
      assert.ok(!log.includes(word), `"${word}" is not in the history file`);
    }
    assert.equal(Deno.statSync(join(hdir, "history.log")).mode! & 0o777, 0o600);
    // A crash while writing: half a record at the end, without a newline.
    Deno.writeTextFileSync(join(hdir, "history.log"), "AbCdEf0123_-", { append: true });

    // Restarted: bob writes while alice has not opened the conversation: one unread.
    alice = new ChatProcess(args(alicePath), home);
    await alice.wait("connected to");
    assert.match(alice.out, /history: 1 damaged record\(s\) skipped/);
    await bob.type("three while away \x1b[2J\n"); // network text: shown filtered from the history too
    await alice.wait("three while away");
    await alice.type("/open\n");
    await alice.wait(/bob\S* {2}28 message\(s\), 1 unread/);
    assert.match(alice.out, /all \(public channel\) {2}1 message\(s\)/);

    await alice.type("/open bob\n");
    await alice.wait("* history with bob");
    await alice.wait("three while away", 5000);
    const page = after(alice.out, "* history with bob");
    assert.match(page, /^: 9-28 of 28 \(\/more for earlier\)/);
    inOrder(page, [...Array.from({ length: 19 }, (_, i) => `[to bob] p${i + 7}-line`), "three while away"]);
    assert.ok(!page.includes("p6-line"), "only the last 20");
    assert.ok(page.includes("three while away \\u{1b}[2J"), "the escape is made visible");
    assert.ok(!alice.out.includes("\x1b"), "no raw escape reaches the terminal");

    await alice.type("/more\n");
    await alice.wait("* earlier with bob");
    const earlier = after(alice.out, "* earlier with bob");
    assert.match(earlier, /^: 1-8 of 28\n/);
    inOrder(earlier, [
      "[to bob] one secret-word-xq7",
      "[dm] bob",
      ": two-words-zq9",
      "[to bob] p1-line",
      "[to bob] p6-line",
    ]);
    await alice.type("/more\n");
    await alice.wait("* that is all: 28 message(s) kept with bob");

    await alice.type("/open\n");
    await alice.wait(/bob\S* {2}28 message\(s\), last [\d:]+ {2}\(current\)/); // read now

    await alice.type("/open all\n");
    await alice.wait("* history with the public channel: 1-1 of 1");

    // A message of several lines, with an escape, from a client that is not the terminal: kept, and shown from
    // the history as it was shown when it arrived (extra lines indented, control characters made visible).
    const carol = await SocpClient.connect(node.url, {
      userId: deriveUserId(carolKey.publicKey)!,
      key: carolKey,
      displayName: "carol",
    });
    try {
      await alice.wait("* carol is online");
      await carol.tell(deriveUserId(aliceKey.publicKey)!, "carol line1\ncarol line2 \x1b[31m");
      const shown = "[dm] carol: carol line1\n    | carol line2 \\u{1b}[31m\n";
      await alice.wait(shown);
      await alice.type("/open carol\n");
      await alice.wait("* history with carol: 1-1 of 1");
      await alice.wait(
        /history with carol[^]*\[dm\] carol: carol line1\n {4}\| carol line2 \\u\{1b\}\[31m\n/,
      );
    } finally {
      await carol.close();
    }

    // /forget: "no" keeps, "y" deletes.
    await alice.type("/forget bob\n");
    await alice.wait("delete the 28 kept message(s) with bob for good? (y/N)");
    await alice.type("no\n");
    await alice.wait("* kept");
    await alice.type("/forget bob\ny\n");
    await alice.wait("* history with bob deleted");
    await alice.type("/open bob\n");
    await alice.wait("* no history with bob yet");

    await alice.type("/forget --all\n");
    await alice.wait("delete ALL history (2 conversation(s)) for good? (y/N)");
    await alice.type("y\n");
    await alice.wait("* all history deleted");
    await alice.type("/open\n");
    await alice.wait("* no conversations kept yet");
    assert.equal(await alice.end(), 0);

    alice = new ChatProcess(args(alicePath), home);
    await alice.wait("connected to");
    await alice.type("/open\n");
    await alice.wait("* no conversations kept yet");
    assert.ok(!alice.out.includes("damaged"), alice.out);

    // Files are records too: name, size, sha256, and where the receiver saved it.
    const file = join(dir, "note.txt");
    Deno.writeTextFileSync(file, "file body 123\n");
    const digest = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", Deno.readFileSync(file))),
      (x) => x.toString(16).padStart(2, "0"),
    ).join("");
    await alice.type(`/file bob ${file}\n`);
    await alice.wait('* sent "note.txt" (100%)');
    await bob.wait('* saved "note.txt"');
    await alice.type("/open bob\n");
    await alice.wait(`[to bob] file "note.txt" (14 bytes, sha256 ${digest.slice(0, 16)}…)`);
    // bob's side (its chat ran all along): what it sent and received, the file with where it was saved.
    await bob.type("/open alice\n");
    await bob.wait(/\* history with alice: \d+-\d+ of 29 \(\/more for earlier\)/);
    await bob.wait(
      new RegExp(
        `\\[dm\\] alice: file "note\\.txt" \\(14 bytes, sha256 ${digest.slice(0, 16)}…\\) saved to `,
      ),
    );
    const bobPage = after(bob.out, "* history with alice");
    inOrder(bobPage, ["p24-line", "p25-line", "[to alice] three while away", 'file "note.txt"']);
  } finally {
    await alice.end().catch(() => {});
    await bob.end().catch(() => {});
    await node.kill();
  }
});
