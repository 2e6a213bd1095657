/**
 * Benchmark (not a test): receiving a 1 MiB file in the browser, beside the terminal client's figure.
 *
 *   deno run -A tests/bench/web_file_receive.ts [MiB]     (also run by `deno task bench`)
 *
 * One node process on loopback; a sender (SocpClient in Deno) sends the same file to a terminal-side receiver
 * (SocpClient in Deno) and then to a browser user of the web app (headless Chromium). Both receivers decrypt the
 * chunks concurrently (every chunk's OAEP blocks are started as the chunk arrives; FILE_END waits for all).
 * Printed per receiver: end to end (sendFile called -> verified bytes in hand) and the receiving phase (FILE_START
 * seen -> file verified), both measured; MiB/s is derived from them. Also measured: the browser's RSA-4096 OAEP
 * decryption rate one at a time and with 64 in flight (how much WebCrypto spreads over cores).
 */
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { encryptTo, sha256Hex } from "../../lib/crypto/rsa.ts";
import { inPage, launchBrowser, newBrowserUser } from "../helpers/browser.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";

const mib = Number(Deno.args[0] ?? 1);
const size = Math.round(mib * 1024 * 1024);
const data = new Uint8Array(size).map((_, i) => (i * 2654435761) >>> 24);
const sha = await sha256Hex(data);

const node = await NodeProcess.start();
const browser = await launchBrowser();
try {
  const sender = await SocpClient.connect(node.url, {
    userId: crypto.randomUUID(),
    key: await fixtureKey("user1"),
    displayName: "sender",
  });
  const term = await SocpClient.connect(node.url, {
    userId: crypto.randomUUID(),
    key: await fixtureKey("user2"),
    displayName: "terminal",
  });
  const got: { e: ClientEvent; at: number }[] = [];
  term.onEvent = (e) => got.push({ e, at: performance.now() });
  const web = await newBrowserUser(browser, node.http, "browser");
  while (!sender.directory.has(term.userId) || !sender.directory.has(web.userId)) {
    await new Promise((r) => setTimeout(r, 20));
  }

  // Terminal-side receiver.
  let t0 = performance.now();
  await sender.sendFile(term.userId, "bench.bin", data);
  while (!got.some(({ e }) => e.kind === "file")) await new Promise((r) => setTimeout(r, 5));
  const tDone = got.find(({ e }) => e.kind === "file")!;
  const tStart = got.find(({ e }) => e.kind === "fileStart")!;
  const f = tDone.e as Extract<ClientEvent, { kind: "file" }>;
  if (!f.bytes || (await sha256Hex(f.bytes)) !== sha) throw new Error("terminal receiver: file damaged");
  const termTotal = (tDone.at - t0) / 1000;
  const termRecv = (tDone.at - tStart.at) / 1000;

  // Browser receiver: the page notes when the transfer appears and when the verified download is offered.
  await inPage(
    web.page,
    `new MutationObserver(() => {
      if (globalThis.benchStart === undefined && document.querySelector("#messages .file")) {
        globalThis.benchStart = performance.now();
      }
      if (globalThis.benchDone === undefined && document.querySelector("#messages a.download")) {
        globalThis.benchDone = performance.now();
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true })`,
  );
  await web.page.locator(`button.person[data-user="${sender.userId}"]`).click();
  t0 = performance.now();
  await sender.sendFile(web.userId, "bench.bin", data);
  await web.page.locator("#messages a.download").waitFor({ timeout: 300_000 });
  const webTotal = (performance.now() - t0) / 1000;
  const shown = await web.page.locator("#messages .sha").textContent();
  if (!shown?.includes(sha)) throw new Error("browser receiver: SHA-256 not shown or different");
  const marks = await inPage<{ start: number; done: number }>(
    web.page,
    "({ start: globalThis.benchStart, done: globalThis.benchDone })",
  );
  const webRecv = (marks.done - marks.start) / 1000;

  // The browser's WebCrypto: RSA-4096 OAEP decryptions, one at a time vs 64 in flight.
  const pub = (await fixtureKey("user3")).publicKey;
  const pkcs8 = await (await fixtureKey("user3")).exportPkcs8();
  const block = await encryptTo(pub, new Uint8Array(400));
  const rate = await inPage<
    { seq: number; par: number; pooled: number; workers: number; usedPool: boolean; cores: number }
  >(
    web.page,
    `(async () => {
      const pkcs8 = new Uint8Array(${JSON.stringify([...pkcs8])});
      const block = ${JSON.stringify(block)};
      const ct = Uint8Array.from(
        atob(block.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - block.length % 4) % 4)),
        (c) => c.charCodeAt(0),
      );
      const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "RSA-OAEP", hash: "SHA-256" }, false, [
        "decrypt",
      ]);
      const N = 64;
      let t = performance.now();
      for (let i = 0; i < N; i++) await crypto.subtle.decrypt({ name: "RSA-OAEP" }, key, ct);
      const seq = (performance.now() - t) / N;
      t = performance.now();
      await Promise.all(Array.from({ length: N }, () => crypto.subtle.decrypt({ name: "RSA-OAEP" }, key, ct)));
      const par = (performance.now() - t) / N;
      // The same 64 spread over the app's decryption workers (/decrypt-worker.js), one per core.
      const W = Math.min(navigator.hardwareConcurrency || 1, 4);
      const workers = Array.from({ length: W }, () => new Worker("/decrypt-worker.js", { type: "module" }));
      t = performance.now();
      await Promise.all(Array.from({ length: N }, (_, id) =>
        new Promise((resolve, reject) => {
          const w = workers[id % W];
          const on = (e) => {
            if (e.data.id !== id) return;
            w.removeEventListener("message", on);
            e.data.ok ? resolve() : reject(new Error("worker decrypt failed"));
          };
          w.addEventListener("message", on);
          w.postMessage({ id, keyId: 1, key, block: ct.slice().buffer });
        })));
      const pooled = (performance.now() - t) / N;
      workers.forEach((w) => w.terminate());
      const usedPool = performance.getEntriesByType("resource").some((r) => r.name.endsWith("/decrypt-worker.js"));
      return { seq, par, pooled, workers: W, usedPool, cores: navigator.hardwareConcurrency };
    })()`,
  );

  const blocks = Math.ceil(size / 446);
  console.log(`receiving a ${mib} MiB file (${blocks} RSA-4096 OAEP blocks), one node on loopback:`);
  console.log(
    `  terminal client (Deno):    end to end ${termTotal.toFixed(2)} s = ${
      (mib / termTotal).toFixed(3)
    } MiB/s;` +
      ` receiving phase ${termRecv.toFixed(2)} s`,
  );
  console.log(
    `  browser (Chromium, app):   end to end ${webTotal.toFixed(2)} s = ${
      (mib / webTotal).toFixed(3)
    } MiB/s;` +
      ` receiving phase ${webRecv.toFixed(2)} s`,
  );
  console.log(
    `  browser WebCrypto OAEP decrypt: ${rate.seq.toFixed(2)} ms/op one at a time, ${
      rate.par.toFixed(2)
    } ms/op with 64 in flight in the page, ${
      rate.pooled.toFixed(2)
    } ms/op with 64 in flight over ${rate.workers} workers` +
      ` (navigator.hardwareConcurrency ${rate.cores}; the app decrypts on its workers: ${rate.usedPool})`,
  );
  console.log(`  (MiB/s derived from the measured seconds)`);
  await sender.close(200);
  await term.close(200);
} finally {
  await browser.close();
  await node.kill();
}
