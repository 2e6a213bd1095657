/**
 * Browser tests: Debian's Chromium (`/usr/bin/chromium`, never downloaded) driven by npm `playwright-core`,
 * headless. Helpers to open the web app as a new user and read what it shows.
 */
import { type Browser, chromium, type Page } from "npm:playwright-core@1.65.1";

/** Where Debian's chromium package puts the browser (.ci/run installs it with apt when missing). */
export const CHROMIUM = "/usr/bin/chromium";

/** Launch headless Chromium (fails with a clear message when it is not installed). */
export async function launchBrowser(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(`${CHROMIUM} is missing: install it with "apt-get install -y chromium"`);
  }
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: 60_000,
  });
}

/** RSA-4096 key generation in the browser on two busy cores takes seconds: bounded, but generous. */
export const KEYGEN_MS = 180_000;

/** A browser user: one context (its own IndexedDB) and one page on the app. */
export interface BrowserUser {
  page: Page;
  name: string;
  userId: string;
  /** Console errors and page errors seen (a test may assert there are none). */
  errors: string[];
}

/** Open the app at `httpUrl` in a fresh context and create an identity named `name`. */
export async function newBrowserUser(browser: Browser, httpUrl: string, name: string): Promise<BrowserUser> {
  const ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 760 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  await page.goto(httpUrl);
  await page.getByLabel("Display name").fill(name);
  await page.getByLabel("Passphrase (protects the key file you export)").fill("correct horse battery");
  await page.getByLabel("Passphrase again").fill("correct horse battery");
  await page.getByRole("button", { name: "Create identity" }).click();
  await waitOnline(page, KEYGEN_MS);
  const userId = await myUserId(page);
  return { page, name, userId, errors };
}

/** Wait until the header says the page is connected. */
export async function waitOnline(page: Page, ms = 60_000): Promise<void> {
  await page.locator('#status[data-state="online"]').waitFor({ timeout: ms });
}

/**
 * Code that runs in the page is passed as text: it uses browser globals (indexedDB, document) that Deno's types
 * do not have, and a `/// <reference lib="dom" />` here would change the types of every test checked with it.
 */
export function inPage<T>(page: Page, js: string): Promise<T> {
  return page.evaluate(js) as Promise<T>;
}

/** The user id the page's identity has (read from IndexedDB). */
export function myUserId(page: Page): Promise<string> {
  return inPage(
    page,
    `new Promise((resolve, reject) => {
      const r = indexedDB.open("socp-chat");
      r.onerror = () => reject(r.error);
      r.onsuccess = () => {
        const g = r.result.transaction("identity").objectStore("identity").get("me");
        g.onsuccess = () => resolve(g.result.userId);
        g.onerror = () => reject(g.error);
      };
    })`,
  );
}

/** Open the conversation with a person (by user id) or the public channel ("public"). */
export async function openConversation(page: Page, id: string): Promise<void> {
  if (id === "public") await page.locator('button.conv-item[data-conv="public"]').click();
  else await page.locator(`button.person[data-user="${id}"]`).click();
  await page.locator("#composer-text").waitFor();
}

/** Type a message in the open conversation and press Enter. */
export async function typeMessage(page: Page, text: string): Promise<void> {
  await page.locator("#composer-text").fill(text);
  await page.locator("#composer-text").press("Enter");
}

/** The texts of the messages on screen in the open conversation. */
export function messageTexts(page: Page): Promise<string[]> {
  return page.locator("#messages article .text").allTextContents();
}

/**
 * Launch Chromium with a persistent profile in `userDataDir` (IndexedDB survives closing it: a browser restart is
 * closing the context and launching again with the same directory).
 */
export async function launchPersistent(userDataDir: string, opts: { colorScheme?: "dark" | "light" } = {}) {
  await Deno.stat(CHROMIUM);
  return await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: 60_000,
    acceptDownloads: true,
    viewport: { width: 1100, height: 760 },
    colorScheme: opts.colorScheme,
  });
}

/** On the first-run screen of `page`: import the key file at `path` with its passphrase; wait until online. */
export async function importIdentity(page: Page, path: string, passphrase: string): Promise<void> {
  await page.getByLabel("Key file", { exact: true }).setInputFiles(path);
  await page.getByLabel("Its passphrase").fill(passphrase);
  await page.getByRole("button", { name: "Import identity" }).click();
  await waitOnline(page, 90_000);
}

/** Record console and page errors of `page` into a list (a test may assert there are none). */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return errors;
}
