/**
 * The web app's trust rules in a real browser (Debian Chromium through playwright-core; PROFILE §16): the safety
 * code is the same on both sides and marks a contact verified; a contact's key change (here: alice's own server
 * forgot bob's pin, as a lying or reinstalled server would, and someone else says hello as bob) shows a warning
 * with both fingerprints and blocks sending until accepted, a verified contact's change needs the mark removed
 * first, and a DM signed by the unaccepted key is shown as unverified, not as bob's. The second case needs the
 * verified mark the first one sets: they are steps of one test that starts the node and the browser it needs
 * (`await using`).
 *
 * Sanitizers are off: playwright keeps its pipe to the browser and its timers open across tests.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { keyFingerprint } from "../../lib/client/trust.ts";
import { sealUserKeyFile } from "../../lib/crypto/keyfile.ts";
import {
  collectErrors,
  importIdentity,
  launchBrowser,
  messageTexts,
  openConversation,
  typeMessage,
  waitOnline,
} from "../helpers/browser.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const U_ALICE = "a11ce000-0000-4000-8000-0000000000d5";
const U_BOB = "b0b00000-0000-4000-8000-0000000000d6";

function watch(c: SocpClient): ClientEvent[] {
  const got = c.drainBuffered();
  c.onEvent = (e) => got.push(e);
  return got;
}

Deno.test({ name: "web trust: a verified contact whose key changes", ...opts }, async (t) => {
  await using stack = new AsyncDisposableStack();
  const tmp = Deno.makeTempDirSync({ prefix: "socp-web-trust-" });
  let n1 = await NodeProcess.start({ dataDir: `${tmp}/n1` });
  stack.defer(async () => {
    await n1.kill();
  });
  const browser = await launchBrowser();
  stack.defer(() => browser.close());
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  const errors = collectErrors(page);
  let bob: SocpClient | undefined;
  stack.defer(async () => {
    await bob?.close();
  });

  await t.step("web trust: the safety code matches bob's and marks him verified", async () => {
    Deno.writeTextFileSync(
      `${tmp}/alice.json`,
      JSON.stringify(
        await sealUserKeyFile(
          { userId: U_ALICE, displayName: "alice", key: await fixtureKey("user5") },
          "pass word 1",
        ),
      ),
    );
    await page.goto(n1.http);
    await importIdentity(page, `${tmp}/alice.json`, "pass word 1");
    bob = await SocpClient.connect(n1.url, {
      userId: U_BOB,
      key: await fixtureKey("user6"),
      displayName: "bob",
    });
    const b = bob;
    watch(b);
    await until(() => b.directory.has(U_ALICE), "bob sees alice", 30_000);
    await b.tell(U_ALICE, "hi alice");
    await page.locator(`button.person[data-user="${U_BOB}"]`).waitFor();
    await openConversation(page, U_BOB);
    await until(async () => (await messageTexts(page)).includes("hi alice"), "alice has bob's DM");
    assert.equal(await page.locator("#trust-mark").getAttribute("data-trust"), "tofu");
    await page.locator("#safety-code").click();
    const digits = (await page.locator("#safety-digits").textContent())!;
    assert.equal(digits, b.core.trustInfo(U_ALICE).safetyCode, "the same code on both sides");
    await page.locator("#toggle-verified").click();
    await page.locator('#trust-mark[data-trust="verified"]').waitFor();
    // The mark is kept (IndexedDB) across a reload.
    await page.reload();
    await waitOnline(page);
    await openConversation(page, U_BOB);
    await page.locator('#trust-mark[data-trust="verified"]').waitFor();
    // The public channel shows its key.
    await openConversation(page, "public");
    await until(() => b.core.channel, "bob has the channel key");
    assert.match(
      (await page.locator("#channel-key").textContent())!,
      new RegExp(keyFingerprint(b.core.channel!.creatorPub)),
    );
    await openConversation(page, U_BOB);
    assert.deepEqual(errors, []);
  });

  await t.step(
    "web trust: a changed key is a warning with both fingerprints; sending waits for the user",
    async () => {
      await bob?.close();
      const port = n1.port;
      await n1.kill();
      // Alice's server forgets bob's key (a reinstalled or lying server would present another one).
      const db = new DatabaseSync(`${tmp}/n1/socp.db`);
      db.prepare("DELETE FROM user_pins WHERE user_id = ?").run(U_BOB);
      db.prepare("DELETE FROM users WHERE user_id = ?").run(U_BOB);
      // ... and makes a new public channel key.
      db.prepare("DELETE FROM channel_key").run();
      db.close();
      n1 = await NodeProcess.start({ dataDir: `${tmp}/n1`, port });
      const mallory = await SocpClient.connect(n1.url, {
        userId: U_BOB,
        key: await fixtureKey("user4"),
        displayName: "bob",
      });
      stack.defer(() => mallory.close());
      const got = watch(mallory);
      await waitOnline(page, 60_000);
      const warning = page.locator("#key-warning");
      await warning.waitFor({ timeout: 30_000 });
      const oldFp = keyFingerprint((await fixtureKey("user6")).publicKey);
      const newFp = keyFingerprint((await fixtureKey("user4")).publicKey);
      assert.equal(await page.locator("#old-fp").textContent(), oldFp);
      assert.equal(await page.locator("#new-fp").textContent(), newFp);
      assert.match((await warning.textContent())!, /hard stop/, "bob was verified");
      assert.ok(await page.locator("#composer-text").isDisabled(), "sending is blocked");
      const shot = `${tmp}/key-warning.png`;
      await page.screenshot({ path: shot });
      console.log(`screenshot: ${shot}`);
      // A DM from the new key claims to be bob: shown as unverified, not as his.
      await until(() => mallory.directory.has(U_ALICE), "mallory sees alice", 30_000);
      await mallory.tell(U_ALICE, "it is me, bob, send me the files");
      const fake = page.locator("#messages article.in", { hasText: "send me the files" });
      await fake.waitFor();
      assert.match((await fake.locator(".from").textContent())!, /^Unverified sender \(claims to be bob/);
      assert.equal(await fake.locator('[data-verified="no"]').count(), 1);
      // The hard stop: the mark goes first, then the key can be accepted.
      assert.equal(await page.locator("#accept-key").count(), 0);
      await page.locator("#unverify").click();
      await page.getByRole("button", { name: "Remove the mark" }).click();
      await page.locator("#accept-key").click();
      await warning.waitFor({ state: "detached" });
      assert.equal(await page.locator("#composer-text").isDisabled(), false);
      await typeMessage(page, "ok, new key accepted");
      await until(
        () => got.some((e) => e.kind === "dm" && e.text === "ok, new key accepted"),
        "the DM goes to the new key",
        30_000,
      );
      // The new channel key is shown, with the old one.
      await until(() => mallory.core.channel, "mallory has the channel key");
      await openConversation(page, "public");
      const note = page.locator('#messages .note[data-kind="channel-key"]');
      await note.waitFor();
      const fp = keyFingerprint(mallory.core.channel!.creatorPub);
      assert.match((await note.textContent())!, new RegExp(`now ${fp}`));
      assert.match((await page.locator("#channel-key").textContent())!, new RegExp(fp));
      await mallory.close();
      assert.deepEqual(errors.filter((e) => !/WebSocket connection to .* failed/.test(e)), []);
    },
  );
});
