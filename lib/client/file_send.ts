/**
 * The client core's files we send: the size and recipient checks, the signed FILE_START, encrypted chunks, FILE_END, and stopping on a refusal.
 *
 * @module
 */
import { msgRef } from "../protocol/msg_ref.ts";
import { canonicalPayloadBytes, fileStartPreimage } from "../protocol/preimages.ts";
import { type CoreState, FILE_CHUNK_BYTES, hex, type SendingFile, type Task } from "./core_state.ts";
import { resolve } from "./directory.ts";
import { sendKey } from "./trust.ts";

/**
 * Start sending a file to a user or ("public") to everyone: checks the size and the recipient, then signs and
 * sends FILE_START. The shell then calls {@linkcode fileChunk} for each chunk (pacing them) and
 * {@linkcode fileEnd}; {@linkcode fileProblem} says when to stop.
 */
export function startFile(
  s: CoreState,
  file: { target: string; name: string; data: Uint8Array; fileId: string },
): { fileId: string; chunks: number; ticket: number } {
  const { target, name, data, fileId } = file;
  if (data.length > s.maxFileBytes) {
    throw new Error(`"${name}" is ${mib(data.length)}; the limit is ${mib(s.maxFileBytes)}`);
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
  const f: SendingFile = {
    fileId,
    name,
    to,
    toLabel,
    encKey,
    data,
    sent: 0,
    chunks: Math.ceil(data.length / FILE_CHUNK_BYTES),
    state: "sending",
  };
  s.sendingFiles.set(fileId, f);
  if (s.sendingFiles.size > 256) s.sendingFiles.delete(s.sendingFiles.keys().next().value!);
  const ticket = s.run(
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
      if (!content_sig) throw new Error("could not sign the file");
      checkStillSending(s, f);
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
    })(),
    false,
  );
  return { fileId, chunks: f.chunks, ticket };
}

/** Encrypt and send chunk `index` of a file started with {@linkcode startFile}. */
export function fileChunk(s: CoreState, fileId: string, index: number, now: number): number {
  s.now = now;
  const f = s.sendingFiles.get(fileId);
  return s.run(
    (function* (): Task {
      if (!f || f.state !== "sending") throw new Error(f?.reason ?? "no such transfer");
      const part = f.data.subarray(index * FILE_CHUNK_BYTES, (index + 1) * FILE_CHUNK_BYTES);
      const ciphertext = (yield { op: "encrypt", key: f.encKey, data: part }) as string | null;
      if (!ciphertext) throw new Error("the recipient's key is not a usable RSA public key");
      checkStillSending(s, f);
      s.emitSend({
        type: "FILE_CHUNK",
        from: s.userId,
        to: f.to,
        ts: s.now,
        payload: { file_id: fileId, index, ciphertext },
      });
      f.sent = Math.min(f.data.length, f.sent + part.length);
      s.emit({ kind: "fileSendProgress", fileId, name: f.name, sent: f.sent, size: f.data.length });
    })(),
    false,
  );
}

/** Send FILE_END; the server ACKs it once the whole file is relayed (state "accepted"). */
export function fileEnd(s: CoreState, fileId: string, now: number): number {
  s.now = now;
  const f = s.sendingFiles.get(fileId);
  return s.run(
    (function* (): Task {
      if (!f || f.state !== "sending") throw new Error(f?.reason ?? "no such transfer");
      const payload = { file_id: fileId };
      f.ref = msgRef((yield { op: "sha256", data: canonicalPayloadBytes(payload) }) as Uint8Array);
      if (s.phase !== "online") throw new Error("not connected");
      f.state = "ended";
      f.data = new Uint8Array(0);
      s.emitSend({ type: "FILE_END", from: s.userId, to: f.to, ts: s.now, payload });
    })(),
    false,
  );
}

/** Why a transfer of ours stopped (refused, connection lost), or undefined while it goes on. */
export function fileProblem(s: CoreState, fileId: string): string | undefined {
  const f = s.sendingFiles.get(fileId);
  return !f ? "no such transfer" : f.state === "failed" ? f.reason : undefined;
}

/** Mark an outgoing file as failed and drop its bytes. */
export function failFile(s: CoreState, f: SendingFile, reason: string): void {
  f.state = "failed";
  f.reason = reason;
  f.data = new Uint8Array(0);
  s.emit({ kind: "fileRefused", fileId: f.fileId, name: f.name, to: f.to, reason });
}

/** Throw when a transfer of ours was stopped (refused, failed) or the connection is gone. */
function checkStillSending(s: CoreState, f: SendingFile): void {
  if (f.state !== "sending") throw new Error(f.reason ?? "stopped");
  if (s.phase !== "online") throw new Error("not connected");
}

/** A byte count in MiB, for messages to the user. */
export function mib(n: number): string {
  return `${(n / 1048576).toFixed(n % 1048576 ? 1 : 0)} MiB`;
}
