/**
 * Pacing (lib/client/pacing.ts and its use by the core): the limits a hello ACK announces, the token bucket our
 * frames go through (on fake time), and the file chunk size from the server's frame limit.
 */
import assert from "node:assert/strict";
import { ASSUMED_LIMITS, chunkBytes, Pacer, readLimits } from "../../lib/client/pacing.ts";
import { CoreDriver, type Frame } from "../helpers/core_driver.ts";
import { fixtureKey } from "../helpers/keys.ts";

const ME = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const SRV = "server-one";
const [meKey, srvKey, bobKey] = await Promise.all(["user1", "user2", "user3"].map(fixtureKey));

async function online(limits?: Frame): Promise<CoreDriver> {
  const d = new CoreDriver(meKey, { userId: ME, displayName: "me" });
  d.core.opened(d.now, "n");
  await d.settle();
  await d.helloAck(srvKey, SRV, { limits });
  await d.adverts(srvKey, SRV, [[ME, meKey, "me"], [BOB, bobKey, "bob"]]);
  return d;
}

Deno.test("readLimits: the announced fields, each bounded; missing or absurd ones keep PROFILE §11's defaults", () => {
  assert.equal(readLimits(undefined), null);
  assert.equal(readLimits([1]), null);
  assert.deepEqual(
    readLimits({ rate_per_sec: 50, rate_burst: 10, max_frame_bytes: 65536, max_file_bytes: 1024 }),
    { ratePerSec: 50, rateBurst: 10, maxFrameBytes: 65536, maxFileBytes: 1024 },
  );
  assert.deepEqual(
    readLimits({ rate_per_sec: 0, rate_burst: -3, max_frame_bytes: "big", max_file_bytes: 1.5 }),
    ASSUMED_LIMITS,
  );
});

Deno.test("the pacer: half the burst at once, then the rest at 80 % of the rate, in order", () => {
  const p = new Pacer({ ...ASSUMED_LIMITS, ratePerSec: 10, rateBurst: 4 });
  p.reset(0);
  assert.deepEqual([p.offer("a", 0), p.offer("b", 0), p.offer("c", 0), p.offer("d", 0)], [
    ["a"],
    ["b"],
    [],
    [],
  ]);
  assert.equal(p.nextTokenAt(), 125, "8 frames/s: one every 125 ms");
  assert.deepEqual(p.release(124), []);
  assert.deepEqual(p.release(125), ["c"]);
  assert.deepEqual(p.release(250), ["d"]);
  assert.equal(p.free(250), false);
  assert.equal(p.free(375), true);
});

Deno.test("the core paces under the limits its server announced: frames beyond them wait for the deadline", async () => {
  const d = await online({ rate_per_sec: 10, rate_burst: 4 });
  assert.deepEqual(d.core.limits, { ...ASSUMED_LIMITS, ratePerSec: 10, rateBurst: 4 });
  const before = d.sent.length;
  for (let i = 0; i < 5; i++) d.core.tell("bob", `m${i}`, d.now);
  await d.settle();
  // The hello took a token of the default bucket; the announced one holds 2: both left, three wait.
  const dms = () => d.sent.slice(before).map((f) => f.type);
  assert.equal(dms().length, 2);
  const due = d.core.nextDeadline()!;
  assert.ok(due > d.now && due <= d.now + 125, `deadline ${due - d.now} ms away`);
  await d.tick(due - d.now);
  assert.equal(dms().length, 3);
  await d.tick(250);
  assert.equal(dms().length, 5);
  assert.equal(d.core.nextDeadline(), undefined, "nothing waits: no timer");
  const texts = await Promise.all(
    d.sent.slice(before).map(async (f) =>
      new TextDecoder().decode(await bobKey.decrypt(f.payload.ciphertext))
    ),
  );
  assert.deepEqual(texts.sort(), ["m0", "m1", "m2", "m3", "m4"], "each once");
});

Deno.test("a file's chunks go out as tokens come, then FILE_END; its ticket settles then", async () => {
  const d = await online({ rate_per_sec: 10, rate_burst: 4 });
  const chunk = chunkBytes(bobKey.publicKey, d.core.limits);
  const { ticket, chunks } = d.core.startFile("bob", "f.bin", new Uint8Array(chunk * 3 + 1), d.now, "f-1");
  assert.equal(chunks, 4);
  await d.settle();
  for (let i = 0; i < 20 && !d.settled.some((t) => t.ticket === ticket); i++) {
    const due = d.core.nextDeadline();
    assert.ok(due !== undefined, "a deadline while the file waits");
    await d.tick(due - d.now);
  }
  const types = d.sent.map((f) => f.type).filter((t) => t.startsWith("FILE_"));
  assert.deepEqual(types, ["FILE_START", "FILE_CHUNK", "FILE_CHUNK", "FILE_CHUNK", "FILE_CHUNK", "FILE_END"]);
  assert.deepEqual(d.sent.filter((f) => f.type === "FILE_CHUNK").map((f) => f.payload.index), [0, 1, 2, 3]);
  assert.equal(d.settled.find((t) => t.ticket === ticket)!.error, undefined);
  assert.deepEqual(d.of("fileSendProgress").map((e) => e.sent), [chunk, 2 * chunk, 3 * chunk, 3 * chunk + 1]);
});

Deno.test("chunk size: 16 blocks under PROFILE §11's frame limit, fewer when the server reads smaller frames", () => {
  assert.equal(chunkBytes(bobKey.publicKey, ASSUMED_LIMITS), 16 * 446);
  // 16 KiB frames: half of it, less the envelope, holds 8 blocks of 683 base64url characters.
  assert.equal(chunkBytes(bobKey.publicKey, { ...ASSUMED_LIMITS, maxFrameBytes: 16 * 1024 }), 8 * 446);
  assert.equal(
    chunkBytes(bobKey.publicKey, { ...ASSUMED_LIMITS, maxFrameBytes: 100 }),
    446,
    "at least one block",
  );
});

Deno.test("the server's file limit is enforced before anything is sent, when it is below ours", async () => {
  const d = await online({ max_file_bytes: 1000 });
  assert.throws(() => d.core.startFile("bob", "x.bin", new Uint8Array(1001), d.now, "f-2"), /the limit is/);
});
