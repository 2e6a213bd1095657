/**
 * The web app's everyday behaviour in a real browser (Debian Chromium through playwright-core): file offers, the
 * main thread while a 1 MiB public file arrives (long tasks measured with a PerformanceObserver), links,
 * notifications and the unread count in the title, the growing composer, phone width, dark mode, and "retry
 * now" while offline. One test starts a node, a browser user (an imported key: no key generation) and a
 * terminal-side user (`await using`) and runs the cases that share them as its steps, in order; a page whose first
 * connections fail and a page without decryption workers are tests of their own, each with its own node and
 * browser.
 *
 * Sanitizers are off: playwright keeps its pipe to the browser and its timers open across tests.
 */
import assert from "node:assert/strict";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { sealUserKeyFile } from "../../lib/crypto/keyfile.ts";
import {
  collectErrors,
  importIdentity,
  inPage,
  launchBrowser,
  messageTexts,
  openConversation,
  waitOnline,
} from "../helpers/browser.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const tmp = Deno.makeTempDirSync({ prefix: "socp-web-ui-" });
const U_ALICE = "a11ce000-0000-4000-8000-0000000000c5";
const U_TOM = "70a00000-0000-4000-8000-0000000000c6";
/** 32 characters, the longest display name. */
const LONG_NAME = "Tom With A Very Long Display Nam";
const MiB = 1024 * 1024;

function watch(c: SocpClient): ClientEvent[] {
  const got = c.drainBuffered();
  c.onEvent = (e) => got.push(e);
  return got;
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let o = 0; o < n; o += 65536) crypto.getRandomValues(b.subarray(o, o + 65536));
  return b;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The page renderers' main-thread tasks in a Chromium trace: CPU time and wall time, in ms. */
function mainThreadTasks(traceText: string): { cpuMs: number; wallMs: number }[] {
  const events = (JSON.parse(traceText).traceEvents ?? []) as {
    name: string;
    ph: string;
    pid: number;
    tid: number;
    dur?: number;
    tdur?: number;
    args?: { name?: string };
  }[];
  const main = new Set(
    events.filter((e) => e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain")
      .map((e) => `${e.pid}:${e.tid}`),
  );
  assert.ok(main.size > 0, "the trace has the renderer's main thread");
  return events
    .filter((e) => e.ph === "X" && e.name === "RunTask" && main.has(`${e.pid}:${e.tid}`))
    .map((e) => {
      assert.ok(typeof e.tdur === "number", "the trace has thread CPU times");
      return { cpuMs: e.tdur! / 1000, wallMs: (e.dur ?? 0) / 1000 };
    });
}

Deno.test({ name: "web ui: one user's everyday use of the page", ...opts }, async (t) => {
  await using stack = new AsyncDisposableStack();
  let n1 = await NodeProcess.start({ dataDir: `${tmp}/n1` });
  stack.defer(async () => {
    await n1.kill();
  });
  Deno.writeTextFileSync(
    `${tmp}/alice.json`,
    JSON.stringify(
      await sealUserKeyFile(
        { userId: U_ALICE, displayName: "alice", key: await fixtureKey("user5") },
        "pass word 1",
      ),
    ),
  );
  const browser = await launchBrowser();
  stack.defer(() => browser.close());
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 760 } });
  await ctx.grantPermissions(["notifications"], { origin: n1.http });
  // Record the notifications the app shows (the real constructor still runs).
  await ctx.addInitScript(`(() => {
    const N = globalThis.Notification;
    globalThis.shown = [];
    globalThis.Notification = class extends N {
      constructor(title, o) { super(title, o); globalThis.shown.push({ title, body: o && o.body }); }
    };
  })()`);
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  const errors = collectErrors(page);
  await page.goto(n1.http);
  await importIdentity(page, `${tmp}/alice.json`, "pass word 1");
  const tom = await SocpClient.connect(n1.url, {
    userId: U_TOM,
    key: await fixtureKey("user6"),
    displayName: LONG_NAME,
  });
  stack.defer(() => tom.close());
  const tomGot = watch(tom);
  await until(
    () => tom.directory.has(U_ALICE) && tom.hasChannel,
    "tom sees alice and has the channel",
    30_000,
  );
  await page.locator(`button.person[data-user="${U_TOM}"]`).waitFor();

  await t.step(
    "web ui: a 1 MiB public file is an offer, then decrypts off the main thread",
    async () => {
      await openConversation(page, "public");
      await inPage(
        page,
        `(() => {
        globalThis.longTasks = [];
        new PerformanceObserver((l) => {
          for (const e of l.getEntries()) globalThis.longTasks.push(Math.round(e.duration));
        }).observe({ type: "longtask" });
        globalThis.progressSeen = [];
        new MutationObserver(() => {
          for (const p of document.querySelectorAll("progress.file-progress")) {
            const t = p.parentElement.querySelector(".progress-text");
            globalThis.progressSeen.push([Number(p.value), t ? t.textContent : ""]);
          }
        }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
      })()`,
      );
      // Chromium's own trace of the page's main thread: each task's CPU time (tdur), which, unlike the long-task
      // API's wall time, does not grow when this shared machine's other processes take the core away.
      await browser.startTracing(page, { categories: ["disabled-by-default-devtools.timeline", "toplevel"] });
      const data = randomBytes(MiB);
      const sending = tom.sendFile("public", "public-data.bin", data);
      const offer = page.locator('#messages .file[data-phase="offered"]');
      await offer.waitFor({ timeout: 60_000 });
      assert.match((await offer.textContent())!, /Nothing is decrypted until you accept it/);
      await sending;
      // Every chunk is here and none was decrypted: accept now, and watch the main thread while they decrypt.
      await offer.locator("button.accept-file").click({ timeout: 120_000 });
      const link = page.locator('#messages a.download[download="public-data.bin"]');
      await link.waitFor({ timeout: 120_000 });
      assert.ok((await page.locator("#messages .sha").textContent())!.includes(await sha256Hex(data)));
      const long = await inPage<number[]>(page, "globalThis.longTasks");
      const cpu = mainThreadTasks(new TextDecoder().decode(await browser.stopTracing()));
      const cpuLong = cpu.filter((t) => t.cpuMs > 50);
      console.log(
        `while a 1 MiB public file arrived and decrypted: PerformanceObserver 'longtask' entries (wall time): ${long.length}${
          long.length ? ` (${long.join(", ")} ms)` : ""
        }; main-thread tasks traced: ${cpu.length}, longest CPU time ${
          Math.max(0, ...cpu.map((t) => t.cpuMs)).toFixed(1)
        } ms (its wall time ${
          (cpu.sort((a, b) => b.cpuMs - a.cpuMs)[0]?.wallMs ?? 0).toFixed(1)
        } ms), over 50 ms of CPU: ${cpuLong.length}; load average ${
          Deno.loadavg().map((x) => x.toFixed(1)).join(" ")
        }`,
      );
      assert.deepEqual(cpuLong, [], "no task on the main thread ran for more than 50 ms");
      // The text under the bar says what the bar shows.
      const seen = await inPage<[number, string][]>(page, "globalThis.progressSeen");
      assert.ok(seen.some(([v]) => v > 0 && v < 100), `progress shown: ${JSON.stringify(seen)}`);
      for (const [v, text] of seen) assert.ok(text.includes(`${v}%`), `bar ${v} and text "${text}"`);
    },
  );

  await t.step(
    "web ui: a declined DM file is not decrypted and the sender is told",
    async () => {
      await openConversation(page, U_TOM);
      const sending = tom.sendFile(
        U_ALICE,
        "unwanted-file-with-a-very-long-name-that-does-not-fit.bin",
        randomBytes(20_000),
      );
      const offer = page.locator('#messages .file[data-phase="offered"]');
      await offer.waitFor({ timeout: 60_000 });
      await sending.catch(() => {});
      await offer.locator("button.decline-file").click();
      await page.locator('#messages .file[data-phase="declined"]').waitFor();
      // The sender's client turns the receiver's notice into the refusal of its transfer.
      await until(
        () => tomGot.some((e) => e.kind === "fileRefused" && /declined/.test(e.reason)),
        "tom is told",
        30_000,
      );
    },
  );

  await t.step("web ui: links are clickable, text stays text", async () => {
    await tom.tell(U_ALICE, 'see https://example.org/a?b=1&c=2, and <img src=x onerror="alert(1)"> too');
    const a = page.locator("#messages a.link");
    await a.waitFor({ timeout: 30_000 });
    assert.equal(await a.getAttribute("href"), "https://example.org/a?b=1&c=2");
    assert.equal(await a.getAttribute("rel"), "noopener noreferrer");
    assert.equal(await a.getAttribute("target"), "_blank");
    assert.equal(await page.locator("#messages img").count(), 0);
    assert.ok((await messageTexts(page)).some((t) => t.includes('<img src=x onerror="alert(1)">')));
  });

  await t.step("web ui: hidden tab: unread count in the title and a notification", async () => {
    await openConversation(page, "public");
    // The page is hidden as when the user switches tabs.
    await inPage(
      page,
      `(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      document.dispatchEvent(new Event("visibilitychange"));
    })()`,
    );
    await tom.tell(U_ALICE, "are you there?");
    await until(async () => (await page.title()) === "(1) socp chat", "the title counts it", 30_000);
    const shown = await until(
      () =>
        inPage<{ title: string; body: string }[]>(page, "globalThis.shown").then((s) => s.length ? s : false),
      "a notification",
    );
    assert.equal(shown[0].body, "are you there?");
    assert.ok(shown[0].title.startsWith("Tom With"));
    await inPage(
      page,
      `(() => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
      Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
      document.dispatchEvent(new Event("visibilitychange"));
    })()`,
    );
    await until(async () => (await page.title()) === "socp chat", "the title without count");
  });

  await t.step("web ui: the composer grows with multi-line text", async () => {
    await openConversation(page, U_TOM);
    const box = page.locator("#composer-text");
    const one = (await box.boundingBox())!.height;
    await box.fill("");
    await box.pressSequentially("line 1");
    for (let i = 2; i <= 4; i++) {
      await box.press("Shift+Enter");
      await box.pressSequentially(`line ${i}`);
    }
    const four = (await box.boundingBox())!.height;
    assert.ok(four > one * 2, `one line ${one}px, four lines ${four}px`);
    await box.press("Enter");
    await until(
      () => tomGot.some((e) => e.kind === "dm" && e.text === "line 1\nline 2\nline 3\nline 4"),
      "tom gets the four lines",
    );
    assert.ok((await box.boundingBox())!.height < four, "back to one line after sending");
  });

  await t.step(
    "web ui: phone width: one-row header, full-width composer, no broken words",
    async () => {
      await openConversation(page, U_TOM);
      await page.setViewportSize({ width: 390, height: 760 });
      const header = (await page.locator("header.topbar").boundingBox())!;
      const parts = await page.locator("header.topbar > *:visible").evaluateAll((els) =>
        els.map((e) => {
          const r = e.getBoundingClientRect();
          return { top: r.top, bottom: r.bottom, right: r.right };
        })
      );
      assert.ok(header.height < 56, `header height ${header.height}`);
      for (const p of parts) assert.ok(p.top < parts[0].bottom && p.right <= 390, JSON.stringify(parts));
      const composer = (await page.locator("#composer-text").boundingBox())!;
      assert.ok(composer.width >= 390 - 40, `composer width ${composer.width}`);
      // Nothing sticks out of the screen: every control and message is inside it.
      const outside = await inPage<string[]>(
        page,
        `[...document.querySelectorAll(".shell *")]
        .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > 390.5)
        .map((e) => e.tagName + "#" + e.id + "." + e.className)`,
      );
      assert.deepEqual(outside, []);
      // Long names end in an ellipsis inside their box.
      const box = (sel: string) =>
        inPage<{ ellipsis: string; cut: boolean; right: number }>(
          page,
          `(() => {
        const e = document.querySelector(${JSON.stringify(sel)});
        return {
          ellipsis: getComputedStyle(e).textOverflow,
          cut: e.scrollWidth > e.clientWidth,
          right: e.getBoundingClientRect().right,
        };
      })()`,
        );
      const title = await box("#conv-title");
      assert.equal(title.ellipsis, "ellipsis");
      assert.ok(title.right <= 390, JSON.stringify(title));
      const fileName = await box("#messages .file-name");
      assert.deepEqual([fileName.ellipsis, fileName.cut], ["ellipsis", true]);
      assert.ok(fileName.right <= 390);
      await page.screenshot({ path: `${tmp}/phone.png` });
      // The Network dialog: no word is split over two lines (long ids and keys may wrap).
      await page.getByRole("button", { name: "Network" }).click();
      await page.locator("#net-bootstrap").waitFor();
      const split = await inPage<{ out: string[]; overflow: boolean }>(
        page,
        `(() => {
      const d = document.getElementById("network");
      const out = [];
      const walk = document.createTreeWalker(d, NodeFilter.SHOW_TEXT);
      for (let n = walk.nextNode(); n; n = walk.nextNode()) {
        if (n.parentElement.closest(".mono, code")) continue;
        for (const m of (n.textContent || "").matchAll(/\\S+/g)) {
          const r = document.createRange();
          r.setStart(n, m.index);
          r.setEnd(n, m.index + m[0].length);
          const lines = new Set([...r.getClientRects()].map((x) => Math.round(x.top)));
          if (lines.size > 1) out.push(m[0]);
        }
      }
      return { out, overflow: d.scrollWidth > d.clientWidth };
    })()`,
      );
      await page.screenshot({ path: `${tmp}/phone-network.png` });
      console.log(`screenshots: ${tmp}/phone.png ${tmp}/phone-network.png`);
      assert.deepEqual(split, { out: [], overflow: false });
      await page.keyboard.press("Escape");
      await page.setViewportSize({ width: 1100, height: 760 });
    },
  );

  await t.step("web ui: dark mode follows prefers-color-scheme", async () => {
    const bg = () => inPage<string>(page, "getComputedStyle(document.documentElement).backgroundColor");
    await page.emulateMedia({ colorScheme: "light" });
    const light = await bg();
    await page.emulateMedia({ colorScheme: "dark" });
    const dark = await bg();
    const lum = (c: string) => c.match(/\d+/g)!.slice(0, 3).map(Number).reduce((a, b) => a + b, 0);
    assert.ok(lum(light) > 600 && lum(dark) < 150, `light ${light}, dark ${dark}`);
    await page.screenshot({ path: `${tmp}/dark.png` });
    console.log(`screenshot: ${tmp}/dark.png`);
    await page.emulateMedia({ colorScheme: "light" });
  });

  await t.step(
    "web ui: offline, the wait is shown and 'retry now' connects at once",
    async () => {
      await tom.close();
      const port = n1.port;
      await n1.kill();
      const banner = page.locator('#link-banner[data-kind="offline"]');
      await banner.waitFor({ timeout: 30_000 });
      const secondsLeft = async () => {
        const t = (await page.locator("#retry-wait").textContent().catch(() => "")) ?? "";
        return Number(/in (\d+) s/.exec(t)?.[1] ?? 0);
      };
      // Wait for a retry wait long enough to see "retry now" beat it.
      await until(async () => await secondsLeft() >= 8, "a wait of 8 s or more", 60_000);
      // The countdown moves (its timer is armed for each change of the text).
      const first = await secondsLeft();
      await until(
        async () => {
          const s = await secondsLeft();
          return s > 0 && s < first;
        },
        "the countdown goes down",
        10_000,
      );
      n1 = await NodeProcess.start({ dataDir: `${tmp}/n1`, port });
      const retryAt = Number(await banner.getAttribute("data-retry-at"));
      await page.getByRole("button", { name: "Retry now" }).click();
      await waitOnline(page, 30_000);
      // Online before the time the next attempt was scheduled for: the button did it.
      const at = await inPage<number>(page, "Date.now()");
      console.log(`online ${retryAt - at} ms before the scheduled retry`);
      assert.ok(at < retryAt, `online at ${at}, retry was scheduled at ${retryAt}`);
      // The browser logs each refused connection attempt while the node was down: expected, not an app error.
      assert.deepEqual(errors.filter((e) => !/WebSocket connection to .* failed/.test(e)), []);
    },
  );
});

/** A node and a browser of a test's own, stopped when the test's scope ends. */
async function nodeAndBrowser() {
  const stack = new AsyncDisposableStack();
  try {
    const n1 = stack.use(await NodeProcess.start());
    const browser = await launchBrowser();
    stack.defer(() => browser.close());
    return { n1, browser, [Symbol.asyncDispose]: () => stack.disposeAsync() };
  } catch (e) {
    await stack.disposeAsync();
    throw e;
  }
}

Deno.test(
  { name: "web ui: a page whose first connections fail shows the wait, then connects by itself", ...opts },
  async () => {
    await using env = await nodeAndBrowser();
    const { n1, browser } = env;
    const bobFile = `${tmp}/bob.json`;
    const bobId = "b0b00000-0000-4000-8000-0000000000c7";
    Deno.writeTextFileSync(
      bobFile,
      JSON.stringify(
        await sealUserKeyFile(
          { userId: bobId, displayName: "bob", key: await fixtureKey("user4") },
          "pass word 2",
        ),
      ),
    );
    const bobCtx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    try {
      const p = await bobCtx.newPage();
      p.setDefaultTimeout(30_000);
      const bobErrors = collectErrors(p);
      // The first two connections are closed at once; the client core tries again by itself (with backoff).
      let cut = 0;
      await p.routeWebSocket(/.*/, (ws) => {
        if (cut < 2) {
          cut++;
          return ws.close({ code: 1011, reason: "test: not now" });
        }
        ws.connectToServer();
      });
      await p.goto(n1.http);
      await p.getByLabel("Key file", { exact: true }).setInputFiles(bobFile);
      await p.getByLabel("Its passphrase").fill("pass word 2");
      await p.getByRole("button", { name: "Import identity" }).click();
      await p.locator('#link-banner[data-kind="offline"] #retry-wait').waitFor({ timeout: 60_000 });
      await waitOnline(p, 60_000);
      assert.equal(cut, 2);
      await until(
        async () => {
          const net = await (await fetch(`${n1.http}/api/network`)).json();
          return net.users_online.some((u: { user_id: string }) => u.user_id === bobId);
        },
        "the server has bob online",
        30_000,
      );
      assert.deepEqual(bobErrors.filter((e) => !/WebSocket/.test(e)), []);
    } finally {
      await bobCtx.close();
    }
  },
);

Deno.test(
  {
    name: "web ui: decryption workers that cannot start: the page decrypts, and what arrives is shown",
    ...opts,
  },
  async () => {
    await using env = await nodeAndBrowser();
    const { n1, browser } = env;
    const carlFile = `${tmp}/carl.json`;
    const carlId = "ca410000-0000-4000-8000-0000000000c8";
    Deno.writeTextFileSync(
      carlFile,
      JSON.stringify(
        await sealUserKeyFile(
          { userId: carlId, displayName: "carl", key: await fixtureKey("user3") },
          "pass word 3",
        ),
      ),
    );
    const carlCtx = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    const dan = await SocpClient.connect(n1.url, {
      userId: "da400000-0000-4000-8000-0000000000c9",
      key: await fixtureKey("user2"),
      displayName: "dan",
    });
    try {
      // Every worker's script fails to load: each worker errors after the page handed it its first blocks.
      await carlCtx.route("**/decrypt-worker.js", (r) => r.abort());
      const p = await carlCtx.newPage();
      p.setDefaultTimeout(30_000);
      await p.goto(n1.http);
      await importIdentity(p, carlFile, "pass word 3");
      await until(() => dan.directory.has(carlId), "dan sees carl", 30_000);
      await dan.tell(carlId, "decrypted without workers");
      await openConversation(p, dan.userId);
      await until(
        async () => (await messageTexts(p)).includes("decrypted without workers"),
        "carl shows dan's DM",
        30_000,
      );
    } finally {
      await dan.close();
      await carlCtx.close();
    }
  },
);
