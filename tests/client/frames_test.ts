/**
 * What the server says about our frames (lib/client/frames.ts): ACK events name our message or file, and ERRORs
 * are matched on their structured fields (`file_id`, `msg_ref`) before their prose.
 */
import assert from "node:assert/strict";
import { canonicalPayloadBytes } from "../../lib/protocol/preimages.ts";
import { msgRef } from "../../lib/protocol/msg_ref.ts";
import { sha256 } from "../../lib/protocol/sha256.ts";
import { CoreDriver, type Frame, signed } from "../helpers/core_driver.ts";
import { fixtureKey } from "../helpers/keys.ts";

const ME = "11111111-1111-4111-8111-111111111111";
const BOB = "22222222-2222-4222-8222-222222222222";
const SRV = "server-one";
const [meKey, srvKey, bobKey] = await Promise.all(["user1", "user2", "user3"].map(fixtureKey));

async function online(): Promise<CoreDriver> {
  const d = new CoreDriver(meKey, { userId: ME, displayName: "me" });
  d.core.opened(d.now, "n");
  await d.settle();
  await d.helloAck(srvKey, SRV);
  await d.adverts(srvKey, SRV, [[ME, meKey, "me"], [BOB, bobKey, "bob"]]);
  return d;
}

/** The msg_ref of a frame we sent (PROFILE §10). */
const refOf = (f: Frame) => msgRef(sha256(canonicalPayloadBytes(f.payload)));

const server = (payload: Frame): Promise<Frame> =>
  signed(srvKey, { type: "ERROR", from: SRV, to: ME, payload });

Deno.test("ack events name the message (messageId) or the file (fileId) the server accepted", async () => {
  const d = await online();
  const { message } = d.core.tell("bob", "hi", d.now);
  await d.settle();
  const dm = d.sent.at(-1);
  await d.frame(await signed(srvKey, { type: "ACK", from: SRV, to: ME, payload: { msg_ref: refOf(dm) } }));
  const ack = d.of("ack").at(-1)!;
  assert.equal(ack.messageId, message.id);
  assert.equal(ack.fileId, undefined);
  d.core.startFile("bob", "a.bin", new Uint8Array(10), d.now, "file-7");
  await d.settle();
  const end = d.sent.at(-1);
  assert.equal(end.type, "FILE_END");
  await d.frame(await signed(srvKey, { type: "ACK", from: SRV, to: ME, payload: { msg_ref: refOf(end) } }));
  const fileAck = d.of("ack").at(-1)!;
  assert.equal(fileAck.fileId, "file-7");
  assert.equal(fileAck.messageId, undefined);
});

Deno.test("an ERROR's msg_ref fails the message it names, not the latest one to that user", async () => {
  const d = await online();
  const first = d.core.tell("bob", "one", d.now).message;
  await d.settle();
  const firstFrame = d.sent.at(-1);
  const second = d.core.tell("bob", "two", d.now).message;
  await d.settle();
  // The prose names nobody: only the structured field says which message it was.
  await d.frame(
    await server({ code: "UNKNOWN_TYPE", detail: "the offline queue is full", msg_ref: refOf(firstFrame) }),
  );
  assert.equal(d.core.message(first.id)!.state, "failed");
  assert.match(d.core.message(first.id)!.error!, /queue is full/);
  assert.equal(d.core.message(second.id)!.state, "sent");
  assert.equal(d.of("error").length, 0, "said through the message's state, not as a loose error");
});

Deno.test("an ERROR's file_id stops that transfer once, whatever its prose says", async () => {
  const d = await online();
  const { ticket } = d.core.startFile("bob", "a.bin", new Uint8Array(10), d.now, "file-9");
  await d.settle();
  for (let i = 0; i < 3; i++) {
    await d.frame(await server({ code: "TIMEOUT", detail: "transfer dropped", file_id: "file-9" }));
  }
  assert.equal(d.of("fileRefused").length, 1);
  assert.equal(d.of("fileRefused")[0].fileId, "file-9");
  assert.equal(d.of("error").length, 0);
  assert.ok(d.settled.some((t) => t.ticket === ticket));
  // A file_id of nothing of ours is a plain error.
  await d.frame(await server({ code: "TIMEOUT", detail: "transfer dropped", file_id: "not-ours" }));
  assert.equal(d.of("error").length, 1);
});

Deno.test("structured fields that are not short strings are ignored (the prose decides)", async () => {
  const d = await online();
  const m = d.core.tell("bob", "x", d.now).message;
  await d.settle();
  await d.frame(await server({ code: "USER_NOT_FOUND", detail: `user ${BOB} is not known`, msg_ref: 42 }));
  assert.equal(d.core.message(m.id)!.state, "failed", "matched by the prose, as with other servers");
});
