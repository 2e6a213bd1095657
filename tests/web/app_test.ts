/// <reference lib="dom" />
/**
 * The web app in a real browser (Debian Chromium through playwright-core): two browser users, a terminal-side
 * SocpClient user, a second node, a node restart. The cases run in order and share the users they create
 * (RSA-4096 key generation in a browser costs seconds).
 *
 * Sanitizers are off: playwright keeps its pipe to the browser and its timers open across tests.
 */
import assert from "node:assert/strict";
import type { Browser } from "playwright-core";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import {
  type BrowserUser,
  launchBrowser,
  messageTexts,
  newBrowserUser,
  openConversation,
  typeMessage,
  waitOnline,
} from "../helpers/browser.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const tmp = Deno.makeTempDirSync({ prefix: "socp-web-test-" });

let browser: Browser;

/** GET over a raw socket, so the Host header can be what a remote visitor would send (fetch() sets its own). */
async function rawGet(port: number, path: string, host: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
  );
  const text = await new Response(conn.readable).text();
  return text.slice(text.indexOf("\r\n\r\n") + 4);
}
let n1: NodeProcess;
let alice: BrowserUser;
let bob: BrowserUser;

Deno.test({ name: "web: the app is served with its security headers", ...opts }, async () => {
  n1 = await NodeProcess.start({ dataDir: `${tmp}/n1` });
  const res = await fetch(`${n1.http}/`);
  const html = await res.text();
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.ok(html.includes('src="/app.js"') && html.includes(n1.serverId));
  const js = await fetch(`${n1.http}/app.js`);
  assert.match(js.headers.get("content-type") ?? "", /javascript/);
  assert.ok((await js.text()).length > 10_000);
  // URLs follow the Host the visitor used, never localhost.
  const net = JSON.parse(await rawGet(n1.port, "/api/network", "chat.example:8443"));
  assert.equal(net.server_id, n1.serverId);
  assert.ok(net.bootstrap.startsWith("chat.example:8443#"), net.bootstrap);
  assert.equal(net.ws_url, "ws://chat.example:8443");
});

Deno.test(
  { name: "web: two browser users exchange DMs both ways and a public message", ...opts },
  async () => {
    browser = await launchBrowser();
    [alice, bob] = await Promise.all([
      newBrowserUser(browser, n1.http, "alice"),
      newBrowserUser(browser, n1.http, "bob"),
    ]);
    // Each sees the other in the people list and opens the DM.
    await openConversation(alice.page, bob.userId);
    await typeMessage(alice.page, "hi bob, from alice");
    await openConversation(bob.page, alice.userId);
    await until(
      async () => (await messageTexts(bob.page)).includes("hi bob, from alice"),
      "bob gets alice's DM",
      30_000,
    );
    await typeMessage(bob.page, "hello alice");
    await until(
      async () => (await messageTexts(alice.page)).includes("hello alice"),
      "alice gets bob's DM",
      30_000,
    );
    // What arrived is marked verified; what was sent is marked sent.
    assert.equal(await bob.page.locator('#messages article.in [data-verified="yes"]').count(), 1);
    assert.equal(await alice.page.locator('#messages article.out[data-state="sent"]').count(), 1);

    await openConversation(alice.page, "public");
    await typeMessage(alice.page, "hello everyone");
    // bob is in the DM: the public channel shows an unread count.
    await until(
      async () =>
        (await bob.page.locator('button.conv-item[data-conv="public"] .badge').textContent()) === "1",
      "bob's unread count for the public channel",
      30_000,
    );
    await openConversation(bob.page, "public");
    await until(
      async () => (await messageTexts(bob.page)).includes("hello everyone"),
      "bob gets the public message",
      30_000,
    );
    assert.deepEqual(alice.errors, []);
    assert.deepEqual(bob.errors, []);
    const shot = `${tmp}/app-alice.png`;
    await alice.page.screenshot({ path: shot });
    console.log(`screenshot: ${shot}`);
  },
);

Deno.test({ name: "web: the private key in IndexedDB is not extractable", ...opts }, async () => {
  const r = await alice.page.evaluate(() =>
    new Promise<{ sign: boolean; decrypt: boolean; exported: string }>((resolve, reject) => {
      const o = indexedDB.open("socp-chat");
      o.onerror = () => reject(o.error);
      o.onsuccess = () => {
        const g = o.result.transaction("identity").objectStore("identity").get("me");
        g.onsuccess = async () => {
          const { signKey, decryptKey } = g.result as { signKey: CryptoKey; decryptKey: CryptoKey };
          let exported = "no error";
          try {
            await crypto.subtle.exportKey("pkcs8", signKey);
          } catch (e) {
            exported = (e as Error).name;
          }
          resolve({ sign: signKey.extractable, decrypt: decryptKey.extractable, exported });
        };
      };
    })
  );
  assert.deepEqual(r, { sign: false, decrypt: false, exported: "InvalidAccessError" });
});

Deno.test({ name: "web: stop", ...opts }, async () => {
  await browser?.close();
  await n1?.kill();
});
