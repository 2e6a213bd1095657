/**
 * The client core's files we send: the size and recipient checks, the signed FILE_START, then each chunk
 * encrypted and sent as the pacer (pacing.ts) has room for it, FILE_END, and stopping on a refusal. The chunk
 * size follows the server's frame limit and the recipient's key size; one ticket settles when FILE_END left (or
 * the transfer stopped).
 *
 * @module
 */
import { msgRef } from "../protocol/msg_ref.ts";
import { canonicalPayloadBytes, fileStartPreimage } from "../protocol/preimages.ts";
import { type CoreState, hex, type SendingFile, type Task } from "./core_state.ts";
import { resolve } from "./directory.ts";
import { chunkBytes } from "./pacing.ts";
import { sendKey } from "./trust.ts";

/**
 * Start sending a file to a user or ("public") to everyone: checks the size (ours and the server's limit) and the
 * recipient, then signs and sends FILE_START, the chunks and FILE_END, paced. The ticket settles once FILE_END
 * left, or with the reason the transfer stopped; `fileSendProgress` events follow the chunks.
 */
export function startFile(
  s: CoreState,
  file: { target: string; name: string; data: Uint8Array; fileId: string },
): { fileId: string; chunks: number; ticket: number } {
  const { target, name, data, fileId } = file;
  const limit = Math.min(s.maxFileBytes, s.limits.maxFileBytes);
  if (data.length > limit) {
    throw new Error(`"${name}" is ${mib(data.length)}; the limit is ${mib(limit)}`);
  }
  if (s.phase !== "online") throw new Error("not connected: files are sent only while connected");
  const pub = target === "public";
  let to = "public", toLabel = "everyone", encKey: string;
  if (pub) {
    if (!s.channel) throw new Error("the public channel key has not arrived yet; try again in a moment");
    encKey = s.channel.creatorPub;
  } else {
    const peer = resolve(s, target);
    encKey = sendKey(s, peer.userId); // the pinned key; throws while a changed key waits for the user
    if (!peer.online) throw new Error(`${peer.label} is not online; files are not queued`);
    to = peer.userId;
    toLabel = peer.label;
  }
  const chunk = chunkBytes(encKey, s.limits);
  const f: SendingFile = {
    fileId,
    name,
    to,
    toLabel,
    encKey,
    data,
    size: data.length,
    sent: 0,
    chunkBytes: chunk,
    chunks: Math.ceil(data.length / chunk),
    next: 0,
    busy: true, // until FILE_START left
    ticket: s.ticket(),
    state: "sending",
  };
  s.sendingFiles.set(fileId, f);
  if (s.sendingFiles.size > 256) s.sendingFiles.delete(s.sendingFiles.keys().next().value!);
  s.run(
    (function* (): Task {
      const sha = hex((yield { op: "sha256", data }) as Uint8Array);
      const ts = s.now;
      const content_sig = (yield {
        op: "sign",
        data: fileStartPreimage({
          file_id: fileId,
          sha256: sha,
          size: data.length,
          from: s.userId,
          to: pub ? undefined : to,
          ts,
        }),
      }) as string | null;
      if (!content_sig) return stop(s, f, "could not sign the file");
      if (!stillSending(s, f)) return;
      s.emitSend({
        type: "FILE_START",
        from: s.userId,
        to,
        ts,
        payload: {
          file_id: fileId,
          name,
          size: data.length,
          sha256: sha,
          mode: pub ? "public" : "dm",
          content_sig,
        },
      });
      f.busy = false;
      advanceFiles(s);
    })(),
    false,
    false,
  );
  return { fileId, chunks: f.chunks, ticket: f.ticket };
}

/**
 * Give every transfer of ours its next step while the pacer has room: encrypt and send its next chunk, or its
 * FILE_END after the last one. One step per transfer at a time, so chunks leave in order.
 */
export function advanceFiles(s: CoreState): void {
  for (const f of s.sendingFiles.values()) {
    if (f.state !== "sending" || f.busy) continue;
    if (!s.pacer.free(s.now)) return; // the pacer's deadline wakes us
    f.busy = true;
    s.run(f.next < f.chunks ? chunkTask(s, f, f.next) : endTask(s, f), false, false);
  }
}

/** True when a transfer of ours waits for a token to send its next step (the pacer's deadline matters). */
export function filesWaiting(s: CoreState): boolean {
  for (const f of s.sendingFiles.values()) if (f.state === "sending" && !f.busy) return true;
  return false;
}

/** Encrypt and send chunk `index`. */
function* chunkTask(s: CoreState, f: SendingFile, index: number): Task {
  const part = f.data.subarray(index * f.chunkBytes, (index + 1) * f.chunkBytes);
  const ciphertext = (yield { op: "encrypt", key: f.encKey, data: part }) as string | null;
  if (!ciphertext) return stop(s, f, "the recipient's key is not a usable RSA public key");
  if (!stillSending(s, f)) return;
  s.emitSend({
    type: "FILE_CHUNK",
    from: s.userId,
    to: f.to,
    ts: s.now,
    payload: { file_id: f.fileId, index, ciphertext },
  });
  f.sent = Math.min(f.size, f.sent + part.length);
  f.next = index + 1;
  f.busy = false;
  s.emit({ kind: "fileSendProgress", fileId: f.fileId, name: f.name, sent: f.sent, size: f.size });
  advanceFiles(s);
}

/** Send FILE_END; the server ACKs it once the whole file is relayed (an `ack` event with the file id). */
function* endTask(s: CoreState, f: SendingFile): Task {
  const payload = { file_id: f.fileId };
  f.ref = msgRef((yield { op: "sha256", data: canonicalPayloadBytes(payload) }) as Uint8Array);
  if (!stillSending(s, f)) return;
  f.state = "ended";
  f.busy = false;
  f.data = new Uint8Array(0);
  s.emitSend({ type: "FILE_END", from: s.userId, to: f.to, ts: s.now, payload });
  s.settle(f.ticket);
}

/** Why a transfer of ours stopped (refused, connection lost), or undefined while it goes on. */
export function fileProblem(s: CoreState, fileId: string): string | undefined {
  const f = s.sendingFiles.get(fileId);
  return !f ? "no such transfer" : f.state === "failed" ? f.reason : undefined;
}

/** Mark an outgoing file as failed, drop its bytes, report it once and settle its ticket with the reason. */
export function failFile(s: CoreState, f: SendingFile, reason: string): void {
  const settle = f.state === "sending";
  f.state = "failed";
  f.reason = reason;
  f.data = new Uint8Array(0);
  s.emit({ kind: "fileRefused", fileId: f.fileId, name: f.name, to: f.to, reason });
  if (settle) s.settle(f.ticket, reason);
}

/** A step of ours failed: stop the transfer (once). */
function stop(s: CoreState, f: SendingFile, reason: string): void {
  if (f.state === "sending") failFile(s, f, reason);
}

/** False (after stopping it) when the transfer was stopped or the connection is gone. */
function stillSending(s: CoreState, f: SendingFile): boolean {
  if (f.state !== "sending") return false;
  if (s.phase !== "online") {
    failFile(s, f, "the connection was lost");
    return false;
  }
  return true;
}

/** A byte count in MiB, for messages to the user. */
export function mib(n: number): string {
  return `${(n / 1048576).toFixed(n % 1048576 ? 1 : 0)} MiB`;
}
