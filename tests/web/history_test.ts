/**
 * The web app's history and tabs in a real browser (Debian Chromium through playwright-core, a persistent
 * profile): the encrypted history after a reload and after a browser restart, two tabs of one identity on one
 * connection (and the next tab taking over when the first closes; a message and a file handed to a leader tab
 * that drops them and closes are sent once by the next; a hand-over a late leader gets twice is sent once), the
 * same identity connected elsewhere shown in words without a reconnect war, deleting a conversation, and
 * sign-out. Each case builds on the one before (the history it checks was made earlier), so they are steps of
 * one test that starts the node, the profile and the terminal-side user it shares (`await using`).
 *
 * Sanitizers are off: playwright keeps its pipe to the browser and its timers open across tests.
 */
import assert from "node:assert/strict";
import type { BrowserContext, Page } from "npm:playwright-core@1.65.1";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { sealUserKeyFile } from "../../lib/crypto/keyfile.ts";
import {
  collectErrors,
  importIdentity,
  inPage,
  launchPersistent,
  messageTexts,
  openConversation,
  typeMessage,
  waitOnline,
} from "../helpers/browser.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const U_ALICE = "a11ce000-0000-4000-8000-0000000000a5";
const U_TOM = "70a00000-0000-4000-8000-0000000000b6";
const PASS = "alice's long passphrase";

const fileBytes = new TextEncoder().encode("kept file line\n".repeat(4000));

function watch(c: SocpClient): ClientEvent[] {
  const got = c.drainBuffered();
  c.onEvent = (e) => got.push(e);
  return got;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Tom writes a DM with his own `ts` (the core stamps what it is given). */
function tellAt(c: SocpClient, to: string, text: string, ts: number): void {
  c.core.tell(to, text, ts);
  (c as unknown as { link: { pump(): void } }).link.pump(); // carry out what the core asked for
}

async function checkRestored(p: Page, unread: number, more: string[]): Promise<void> {
  await p.locator(`button.conv-item[data-conv="${U_TOM}"] .badge:has-text("${unread}")`).waitFor();
  await p.locator(`button.conv-item[data-conv="${U_TOM}"]`).click();
  await p.locator("#messages article").first().waitFor();
  const texts = await messageTexts(p);
  assert.deepEqual(texts, [
    "written a minute ago",
    "hello alice, this is tom",
    "hi tom",
    "unread one",
    "unread two",
    ...more,
  ]);
  assert.equal(await p.locator('#messages article.in [data-verified="yes"]').count(), 5 + more.length);
  assert.ok(
    ["sent", "accepted"].includes(
      (await p.locator("#messages article.out", { hasText: "hi tom" }).getAttribute("data-state"))!,
    ),
  );
  // The kept file is decrypted from the history and downloads with the same bytes.
  const link = p.locator('#messages a.download[download="kept.txt"]');
  await link.waitFor();
  const [dl] = await Promise.all([p.waitForEvent("download", { timeout: 30_000 }), link.click()]);
  assert.equal(await sha256Hex(await Deno.readFile((await dl.path())!)), await sha256Hex(fileBytes));
}

/** How many messages the page's history store holds. */
function storedCount(p: Page): Promise<number> {
  return inPage<number>(
    p,
    `new Promise((resolve) => {
      const o = indexedDB.open("socp-chat");
      o.onsuccess = () => {
        const g = o.result.transaction("history").objectStore("history").count();
        g.onsuccess = () => resolve(g.result);
      };
    })`,
  );
}

/** Whether the page's tab leads or follows. */
function role(p: Page): Promise<string> {
  return inPage<string>(p, `document.querySelector(".shell")?.dataset.role ?? ""`);
}

/**
 * The test's hand on the race between tabs: with `holdHandovers` set, what the page's channel between tabs brings
 * as a hand-over (`send`) is held: "drop" keeps it for ever (a tab closing as it arrives), "twice" delivers the
 * first two together once the second came (a leader answering late).
 */
const HOLD_HANDOVERS = `(() => {
  const d = Object.getOwnPropertyDescriptor(BroadcastChannel.prototype, "onmessage");
  globalThis.held = [];
  globalThis.released = 0;
  Object.defineProperty(BroadcastChannel.prototype, "onmessage", {
    configurable: true,
    get() { return d.get.call(this); },
    set(f) {
      d.set.call(this, (e) => {
        const mode = globalThis.holdHandovers;
        if (!mode || !e.data || e.data.t !== "send") return f.call(this, e);
        globalThis.held.push(e);
        if (mode === "twice" && globalThis.held.length === 2) {
          globalThis.holdHandovers = "";
          for (const x of globalThis.held.splice(0)) f.call(this, x);
          globalThis.released = 2;
        }
      });
    },
  });
})()`;

Deno.test(
  { name: "web history: one identity's history, tabs and sign-out in one profile", ...opts },
  async (t) => {
    await using stack = new AsyncDisposableStack();
    const tmp = Deno.makeTempDirSync({ prefix: "socp-web-history-" });
    const profile = `${tmp}/profile`;
    const n1 = await NodeProcess.start({ dataDir: `${tmp}/n1` });
    stack.defer(async () => {
      const bad = n1.logs.filter((l) => /ERROR|panic|uncaught/i.test(l));
      if (bad.length) console.log(`node errors:\n${bad.slice(-20).join("\n")}`);
      await n1.kill();
    });
    let ctx!: BrowserContext;
    stack.defer(async () => {
      await ctx?.close();
    });
    let tom!: SocpClient;
    let tomGot: ClientEvent[] = [];
    stack.defer(async () => {
      await tom?.close();
    });
    let errors: string[] = [];
    let page: Page;
    let page2: Page;
    async function openPage(): Promise<Page> {
      const p = await ctx.newPage();
      p.setDefaultTimeout(30_000);
      errors = collectErrors(p);
      await p.goto(n1.http);
      return p;
    }

    await t.step("web history: a conversation, a file and unread counts", async () => {
      const file = await sealUserKeyFile(
        { userId: U_ALICE, displayName: "alice", key: await fixtureKey("user5") },
        PASS,
      );
      Deno.writeTextFileSync(`${tmp}/alice.json`, JSON.stringify(file));
      ctx = await launchPersistent(profile);
      page = await openPage();
      await importIdentity(page, `${tmp}/alice.json`, PASS);

      tom = await SocpClient.connect(n1.url, {
        userId: U_TOM,
        key: await fixtureKey("user6"),
        displayName: "tom",
      });
      tomGot = watch(tom);
      await until(() => tom.directory.has(U_ALICE), "tom sees alice", 30_000);
      await tom.tell(U_ALICE, "hello alice, this is tom");
      await page.locator(`button.conv-item[data-conv="${U_TOM}"] .badge:has-text("1")`).waitFor();
      await openConversation(page, U_TOM);
      await typeMessage(page, "hi tom");
      await until(() => tomGot.some((e) => e.kind === "dm" && e.text === "hi tom"), "tom gets alice's reply");
      // Sent later with an earlier time: shown in send order, before the reply.
      const now = Date.now();
      tellAt(tom, U_ALICE, "written a minute ago", now - 60_000);
      await until(
        async () => (await messageTexts(page)).includes("written a minute ago"),
        "the late message",
        30_000,
      );
      assert.deepEqual(await messageTexts(page), [
        "written a minute ago",
        "hello alice, this is tom",
        "hi tom",
      ]);
      // A file: an offer first, kept in the history once accepted.
      const sending = tom.sendFile(U_ALICE, "kept.txt", fileBytes);
      await page.locator('#messages .file[data-phase="offered"] button.accept-file').click();
      await sending;
      await page.locator('#messages a.download[download="kept.txt"]').waitFor({ timeout: 60_000 });
      await page.locator('#messages .kept[data-kept="yes"]').waitFor();
      // Two messages arrive while alice looks at the public channel: 2 unread.
      await openConversation(page, "public");
      await tom.tell(U_ALICE, "unread one");
      await tom.tell(U_ALICE, "unread two");
      await page.locator(`button.conv-item[data-conv="${U_TOM}"] .badge:has-text("2")`).waitFor();
      assert.deepEqual(errors, []);
    });

    await t.step("web history: everything is where it was after a reload", async () => {
      await page.reload();
      await waitOnline(page);
      await checkRestored(page, 2, []);
      // One more, unread, for the restart.
      await openConversation(page, "public");
      await tom.tell(U_ALICE, "while you were away");
      await page.locator(`button.conv-item[data-conv="${U_TOM}"] .badge:has-text("1")`).waitFor();
      await until(async () => (await storedCount(page)) === 7, "the message is stored", 10_000);
    });

    await t.step(
      "web history: ... and after a browser restart; it is stored only as ciphertext",
      async () => {
        await ctx.close();
        ctx = await launchPersistent(profile);
        page = await openPage();
        await waitOnline(page, 60_000);
        await checkRestored(page, 1, ["while you were away"]);
        // At rest: no record holds the text; the history key is a non-extractable AES-GCM CryptoKey.
        const r = await inPage<{ records: number; plain: string[]; extractable: boolean; alg: string }>(
          page,
          `new Promise((resolve, reject) => {
        const o = indexedDB.open("socp-chat");
        o.onerror = () => reject(o.error);
        o.onsuccess = () => {
          const tx = o.result.transaction(["history", "vault", "fileData"]);
          const h = tx.objectStore("history").getAll();
          const k = tx.objectStore("vault").get("key");
          const f = tx.objectStore("fileData").getAll();
          tx.oncomplete = () => {
            const text = (b) => new TextDecoder("latin1").decode(new Uint8Array(b));
            const all = [...h.result, ...f.result].map((x) => JSON.stringify(Object.keys(x)) + text(x.ct)).join("");
            resolve({
              records: h.result.length,
              // Phrases long enough that random ciphertext cannot hold them by chance (a
              // 3-letter name like "tom" turns up in ~70 KB of random bytes about once in 250 runs).
              plain: ["${U_TOM}", "hello alice, this is", "kept file line", "written a minute", "while you were away"]
                .filter((p) => all.includes(p)),
              extractable: k.result.key.extractable,
              alg: k.result.key.algorithm.name,
            });
          };
        };
      })`,
        );
        assert.equal(r.records, 7);
        assert.deepEqual(r.plain, []);
        assert.equal(r.extractable, false);
        assert.equal(r.alg, "AES-GCM");
      },
    );

    await t.step(
      "web tabs: two tabs of one identity share one connection and one state",
      async () => {
        const hellos = () => n1.logs.filter((l) => l.includes(U_ALICE) && /NAME_IN_USE/.test(l)).length;
        const before = hellos();
        page2 = await openPage();
        const errors2 = errors;
        await waitOnline(page2, 60_000);
        await page2.locator(`button.conv-item[data-conv="${U_TOM}"]`).click();
        await until(
          async () => (await messageTexts(page2)).includes("unread two"),
          "tab 2 shows the history",
        );
        // Written in the second tab, sent over the first tab's connection; both tabs show it.
        await typeMessage(page2, "from the second tab");
        await until(
          () => tomGot.some((e) => e.kind === "dm" && e.text === "from the second tab" && e.verified),
          "tom gets it",
        );
        await until(async () => (await messageTexts(page)).includes("from the second tab"), "tab 1 shows it");
        await tom.tell(U_ALICE, "to both tabs");
        await until(async () => (await messageTexts(page2)).includes("to both tabs"), "tab 2 gets tom's DM");
        await until(async () => (await messageTexts(page)).includes("to both tabs"), "tab 1 gets tom's DM");
        // A file offered to both tabs, accepted in the second: the first tab's connection decrypts it, both offer it.
        const shared = new TextEncoder().encode("for both tabs\n".repeat(500));
        const sending = tom.sendFile(U_ALICE, "for-both.txt", shared);
        await page2.locator('#messages .file[data-phase="offered"] button.accept-file').click({
          timeout: 60_000,
        });
        await sending;
        for (const p of [page2, page]) {
          const link = p.locator('#messages a.download[download="for-both.txt"]');
          await link.waitFor({ timeout: 60_000 });
          const [dl] = await Promise.all([p.waitForEvent("download", { timeout: 30_000 }), link.click()]);
          assert.equal(await sha256Hex(await Deno.readFile((await dl.path())!)), await sha256Hex(shared));
        }
        // One session at the server: alice is online once, nothing was refused.
        const net = await (await fetch(`${n1.http}/api/network`)).json();
        assert.equal(net.users_online.filter((u: { user_id: string }) => u.user_id === U_ALICE).length, 1);
        assert.equal(hellos(), before);
        assert.equal(await page2.locator("text=NAME_IN_USE").count(), 0);
        // The first tab closes: the second takes the connection over.
        await page.close();
        await tom.tell(U_ALICE, "after the first tab closed");
        await until(
          async () => (await messageTexts(page2)).includes("after the first tab closed"),
          "tab 2 gets it on its own connection",
          60_000,
        );
        await waitOnline(page2);
        page = page2;
        assert.deepEqual(errors2, []);
      },
    );

    await t.step(
      "web tabs: a message handed to a leader tab that closes at once is sent once, by the next leader",
      async () => {
        // Every page from now on can hold what its channel between tabs brings (the test's hand on the race).
        await ctx.addInitScript(HOLD_HANDOVERS);
        await page.reload();
        await waitOnline(page, 60_000);
        const follower = await openPage();
        const errorsF = errors;
        await until(async () => (await role(follower)) === "follower", "the new tab follows");
        await follower.locator(`button.conv-item[data-conv="${U_TOM}"]`).click();
        // The leader gets the hand-over and drops it (as a tab closing at that moment does), then closes.
        await inPage(page, `globalThis.holdHandovers = "drop"`);
        await typeMessage(follower, "handed to a closing tab");
        // A file goes the same way.
        const handedFile = new TextEncoder().encode("handed file line\n".repeat(300));
        Deno.writeFileSync(`${tmp}/handed.txt`, handedFile);
        await follower.locator("#file-input").setInputFiles(`${tmp}/handed.txt`);
        await until(
          async () => (await inPage<number>(page, "globalThis.held.length")) >= 2,
          "the leader got both",
        );
        await page.close();
        await until(
          () => tomGot.some((e) => e.kind === "dm" && e.text === "handed to a closing tab" && e.verified),
          "tom gets the message the closed tab dropped",
          60_000,
        );
        const file = await until(
          () => tomGot.find((e) => e.kind === "file" && e.name === "handed.txt"),
          "tom gets the file the closed tab dropped",
          60_000,
        );
        assert.ok(file.kind === "file" && file.bytes && file.verified);
        assert.equal(await sha256Hex(file.bytes), await sha256Hex(handedFile));
        await waitOnline(follower);
        assert.equal(await role(follower), "leader");

        // A leader that answers late gets the hand-over twice (the first and the one handed again at the
        // deadline): it sends it once.
        const second = await openPage();
        const errors2 = errors;
        await until(async () => (await role(second)) === "follower", "the third tab follows");
        await second.locator(`button.conv-item[data-conv="${U_TOM}"]`).click();
        await inPage(follower, `globalThis.holdHandovers = "twice"`);
        await typeMessage(second, "handed twice");
        await until(
          async () => (await inPage<number>(follower, "globalThis.released")) === 2,
          "both delivered",
        );
        await until(
          () => tomGot.some((e) => e.kind === "dm" && e.text === "handed twice" && e.verified),
          "tom gets the message handed twice",
        );
        // Later messages come after on the same connection: by then a second copy would have arrived too.
        await typeMessage(second, "after the hand-overs");
        await until(
          () => tomGot.some((e) => e.kind === "dm" && e.text === "after the hand-overs"),
          "tom gets the next one",
        );
        const times = (text: string) => tomGot.filter((e) => e.kind === "dm" && e.text === text).length;
        assert.equal(times("handed to a closing tab"), 1);
        assert.equal(times("handed twice"), 1);
        assert.equal(tomGot.filter((e) => e.kind === "file" && e.name === "handed.txt").length, 1);
        for (const p of [follower, second]) {
          await until(
            async () => (await messageTexts(p)).includes("after the hand-overs"),
            "both tabs show it",
          );
          const texts = await messageTexts(p);
          assert.equal(texts.filter((x) => x === "handed to a closing tab").length, 1);
          assert.equal(texts.filter((x) => x === "handed twice").length, 1);
        }
        await second.close();
        page = follower;
        errors = errorsF;
        assert.deepEqual(errors2, []);
      },
    );

    await t.step(
      "web tabs: a message typed before the tab knows whether it leads is sent once it does",
      async () => {
        // The next load of this tab holds its Web Lock request back until the test opens the gate.
        await page.addInitScript(`(() => {
      if (!sessionStorage.getItem("gate-election")) return;
      sessionStorage.removeItem("gate-election");
      const locks = navigator.locks;
      const request = locks.request.bind(locks);
      let open;
      const gate = new Promise((resolve) => (open = resolve));
      globalThis.openElection = open;
      locks.request = (...args) => gate.then(() => request(...args));
    })()`);
        await inPage(page, `sessionStorage.setItem("gate-election", "1")`);
        await page.reload();
        await page.locator(`button.conv-item[data-conv="${U_TOM}"]`).click();
        await typeMessage(page, "typed before the election");
        assert.equal(await inPage(page, `document.querySelector(".shell").dataset.role`), "electing");
        await inPage(page, "globalThis.openElection()");
        await until(
          () => tomGot.some((e) => e.kind === "dm" && e.text === "typed before the election" && e.verified),
          "tom gets the message typed before the election",
          60_000,
        );
        await waitOnline(page);
        assert.equal(await inPage(page, `document.querySelector(".shell").dataset.role`), "leader");
      },
    );

    await t.step(
      "web tabs: a newer session elsewhere takes over: said in words, and no reconnect war",
      async () => {
        // Count the page's connection attempts from now on.
        await ctx.addInitScript(`(() => {
      const W = globalThis.WebSocket;
      globalThis.wsOpened = 0;
      globalThis.WebSocket = class extends W { constructor(...a) { super(...a); globalThis.wsOpened++; } };
    })()`);
        await page.reload();
        await waitOnline(page, 60_000);
        // The same identity signs in from a terminal: the newer session takes over (PROFILE §16).
        const term = await SocpClient.connect(n1.url, { userId: U_ALICE, key: await fixtureKey("user5") });
        const termGot = watch(term);
        const banner = page.locator('#link-banner[data-kind="elsewhere"]');
        await banner.waitFor({ timeout: 60_000 });
        assert.match((await banner.textContent())!, /Signed in elsewhere/);
        assert.doesNotMatch((await page.locator("body").textContent())!, /NAME_IN_USE|4001/);
        assert.equal(await page.locator("#status").textContent(), "Signed in elsewhere");
        // The terminal keeps the identity; DMs go there.
        await tom.tell(U_ALICE, "to the terminal");
        await until(
          () => termGot.some((e) => e.kind === "dm" && e.text === "to the terminal"),
          "the terminal has it",
        );
        // Back to the browser only when the user asks: one attempt on the click, none of its own before it.
        await page.getByRole("button", { name: "Use this identity here" }).click();
        await waitOnline(page, 60_000);
        assert.equal(await inPage<number>(page, "globalThis.wsOpened"), 2);
        await until(
          () => termGot.some((e) => e.kind === "refused"),
          "the terminal is told it was taken over",
        );
        assert.equal(term.connected, false);
        await term.close();
        assert.deepEqual(errors, []);
      },
    );

    await t.step("web history: a conversation is deleted, in the store too", async () => {
      await page.locator(`button.conv-item[data-conv="${U_TOM}"]`).click();
      await page.locator("#delete-conv").click();
      await page.getByRole("button", { name: "Delete conversation" }).click();
      await page.locator(`button.conv-item[data-conv="${U_TOM}"]`).waitFor({ state: "detached" });
      await until(async () => (await storedCount(page)) === 0, "the history store is empty", 10_000);
      await page.reload();
      await waitOnline(page);
      assert.equal(await page.locator(`button.conv-item[data-conv="${U_TOM}"]`).count(), 0);
    });

    await t.step("web: sign-out offers the key export, then removes the identity", async () => {
      await page.getByRole("button", { name: "Account" }).click();
      await page.getByRole("button", { name: "Sign out…" }).click();
      const [dl] = await Promise.all([
        page.waitForEvent("download", { timeout: 30_000 }),
        page.getByRole("button", { name: "Export key first" }).click(),
      ]);
      assert.equal(dl.suggestedFilename(), "alice.json");
      await page.getByRole("button", { name: "Sign out and delete" }).click();
      await page.getByRole("button", { name: "Import identity" }).waitFor({ timeout: 30_000 });
      // Nothing of alice is left (the first-run screen made a fresh, empty history key for whoever comes next).
      const left = await inPage<number[]>(
        page,
        `new Promise((resolve) => {
      const o = indexedDB.open("socp-chat");
      o.onsuccess = () => {
        const names = ["identity", "contacts", "history", "fileData"];
        const tx = o.result.transaction(names);
        const counts = names.map((n) => tx.objectStore(n).count());
        tx.oncomplete = () => resolve(counts.map((c) => c.result));
      };
    })`,
      );
      assert.deepEqual(left, [0, 0, 0, 0]);
      // The session closed: alice is no longer online.
      await until(
        async () => {
          const net = await (await fetch(`${n1.http}/api/network`)).json();
          return !net.users_online.some((u: { user_id: string }) => u.user_id === U_ALICE);
        },
        "alice offline",
        30_000,
      );
    });
  },
);
