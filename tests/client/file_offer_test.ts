/**
 * The client core's file offers (`holdFiles`, used by the web app): an incoming file's chunks stay encrypted until
 * the shell accepts it; accepted, it decrypts and is checked as always; declined, it is dropped undecrypted and a
 * DM's sender gets the refusal notice; held ciphertext is bounded by the announced size.
 */
import assert from "node:assert/strict";
import type { CryptoOp } from "../../lib/client/types.ts";
import { encryptTo } from "../../lib/crypto/rsa.ts";
import { CoreDriver, type Frame } from "../helpers/core_driver.ts";
import { fixtureKey } from "../helpers/keys.ts";

const ME = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const SRV = "server-one";
const [meKey, srvKey, bobKey] = await Promise.all(["user1", "user2", "user3"].map(fixtureKey));

async function sha256Hex(b: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(b)));
  return [...d].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** A core with file offers, online, that knows Bob; it counts the decryptions it asks for. */
async function online(): Promise<{ d: CoreDriver; decrypts: () => number }> {
  const d = new CoreDriver(meKey, { userId: ME, displayName: "me", holdFiles: true });
  let n = 0;
  const run = d.crypto.run.bind(d.crypto);
  d.crypto.run = (op: CryptoOp) => {
    if (op.op === "decrypt") n++;
    return run(op);
  };
  await d.open();
  await d.helloAck(srvKey, SRV);
  await d.adverts(srvKey, SRV, [[ME, meKey, "me"], [BOB, bobKey, "bob"]]);
  return { d, decrypts: () => n };
}

/** Bob's frames for a DM file of `data` (chunks of 446 bytes, one OAEP block each). */
async function fileFrames(fileId: string, data: Uint8Array): Promise<Frame[]> {
  const out: Frame[] = [{
    type: "FILE_START",
    from: BOB,
    to: ME,
    ts: Date.now(),
    payload: { file_id: fileId, name: "a.bin", size: data.length, sha256: await sha256Hex(data), mode: "dm" },
  }];
  for (let i = 0, o = 0; o < data.length; i++, o += 446) {
    out.push({
      type: "FILE_CHUNK",
      from: BOB,
      to: ME,
      ts: Date.now(),
      payload: {
        file_id: fileId,
        index: i,
        ciphertext: await encryptTo(meKey.publicKey, data.subarray(o, o + 446)),
      },
    });
  }
  out.push({ type: "FILE_END", from: BOB, to: ME, ts: Date.now(), payload: { file_id: fileId } });
  return out;
}

const data = crypto.getRandomValues(new Uint8Array(2000));

Deno.test("file offer: nothing is decrypted until accepted; then the file arrives checked", async () => {
  const { d, decrypts } = await online();
  const fileId = "f0000000-0000-4000-8000-000000000001";
  for (const f of await fileFrames(fileId, data)) await d.frame(f);
  const start = d.of("fileStart")[0];
  assert.equal(start.offer, true);
  assert.equal(typeof start.ts, "number");
  assert.equal(decrypts(), 0, "no chunk decrypted before the user accepts");
  assert.equal(d.of("file").length, 0);
  assert.equal(d.core.acceptFile(BOB, fileId, d.now), true);
  await d.settle();
  assert.equal(decrypts(), 5);
  const file = d.of("file")[0];
  assert.deepEqual(file.bytes, data);
  assert.equal(file.sha256, await sha256Hex(data));
  assert.equal(d.core.acceptFile(BOB, fileId, d.now), false, "no offer left");
});

Deno.test("file offer: accepted before the chunks arrive, they decrypt as they come", async () => {
  const { d, decrypts } = await online();
  const fileId = "f0000000-0000-4000-8000-000000000002";
  const frames = await fileFrames(fileId, data);
  await d.frame(frames[0]);
  assert.equal(d.core.acceptFile(BOB, fileId, d.now), true);
  for (const f of frames.slice(1)) await d.frame(f);
  assert.equal(decrypts(), 5);
  assert.deepEqual(d.of("file")[0].bytes, data);
});

Deno.test("file offer: declined, it is dropped undecrypted and the sender is told", async () => {
  const { d, decrypts } = await online();
  const fileId = "f0000000-0000-4000-8000-000000000003";
  for (const f of await fileFrames(fileId, data)) await d.frame(f);
  const before = d.sent.length;
  d.core.declineFile(BOB, fileId, d.now);
  await d.settle();
  assert.equal(decrypts(), 0);
  assert.equal(d.of("file").length, 0);
  const notice = d.sent.slice(before).find((f) => f.type === "MSG_DIRECT");
  assert.ok(notice, "an encrypted notice goes to the sender");
  assert.equal(notice.to, BOB);
  assert.equal(d.core.acceptFile(BOB, fileId, d.now), false, "a declined offer cannot be accepted");
});

Deno.test("file offer: held ciphertext is bounded by the announced size", async () => {
  const { d, decrypts } = await online();
  const fileId = "f0000000-0000-4000-8000-000000000004";
  const frames = await fileFrames(fileId, new Uint8Array(10));
  await d.frame(frames[0]);
  // One chunk far larger than 10 bytes can need: the offer ends at once instead of holding it.
  const huge = await encryptTo(meKey.publicKey, new Uint8Array(446 * 40));
  await d.frame({ ...frames[1], payload: { ...frames[1].payload, ciphertext: huge } });
  const file = d.of("file")[0];
  assert.equal(file?.bytes, null);
  assert.match(file.problem!, /more data than announced/);
  assert.equal(decrypts(), 0);
  assert.equal(d.core.acceptFile(BOB, fileId, d.now), false, "nothing left to accept");
  assert.ok(d.sent.some((f) => f.type === "MSG_DIRECT" && f.to === BOB), "the sender is told");
});
