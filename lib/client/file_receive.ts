/**
 * The client core's files we receive: reassembly from chunks decrypted concurrently, the size and SHA-256 checks, and the refusal notice sent to the sender.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { fileStartPreimage } from "../protocol/preimages.ts";
import { type CoreState, hex, type Incoming, type Task } from "./core_state.ts";
import { mib } from "./file_send.ts";
import { buildTask, newOutgoing } from "./outgoing.ts";
import type { ClientEvent } from "./types.ts";

/** An incoming file announcement. */
export function* onFileStart(s: CoreState, env: Envelope<"FILE_START">): Task {
  const p = env.payload;
  const k = `${env.from}|${p.file_id}`;
  const label = s.labelOf(env.from);
  if (s.incoming.has(k)) return;
  if (s.incoming.size >= 64 || p.size > s.maxFileBytes) {
    const problem = s.incoming.size >= 64
      ? "too many transfers at once"
      : `it is ${mib(p.size)}; the limit is ${mib(s.maxFileBytes)}`;
    s.emit({ kind: "warning", detail: `refused "${p.name}" from ${label}: ${problem}` });
    if (p.mode === "dm") yield* refusalNotice(s, env.from, p.name, p.file_id, problem);
    return;
  }
  const known = s.contacts.get(env.from)?.pubkey ?? s.directory.get(env.from)?.pubkey; // pinned first
  const pre = fileStartPreimage({
    file_id: p.file_id,
    sha256: p.sha256,
    size: p.size,
    from: env.from,
    to: p.mode === "public" ? undefined : env.to,
    ts: env.ts,
  });
  const verified = !!p.content_sig && !!known &&
    ((yield { op: "verify", key: known, preimages: [pre], sig: p.content_sig }) as number) >= 0;
  s.incoming.set(k, {
    fileId: p.file_id,
    from: env.from,
    name: p.name,
    size: p.size,
    sha256: p.sha256.toLowerCase(),
    mode: p.mode,
    chunks: new Map(),
    pending: 0,
    received: 0,
    lastPct: 0,
    verified,
    failed: undefined,
    ended: false,
    accepted: !s.holdFiles,
    held: [],
    heldChars: 0,
  });
  s.emit({
    kind: "fileStart",
    fileId: p.file_id,
    from: env.from,
    fromName: s.nameOf(env.from),
    name: p.name,
    size: p.size,
    mode: p.mode,
    ts: env.ts,
    verified,
    offer: s.holdFiles,
  });
}

/** One chunk of an incoming file. */
export function onFileChunk(s: CoreState, env: Envelope<"FILE_CHUNK">): void {
  const t = s.incoming.get(`${env.from}|${env.payload.file_id}`);
  if (!t || t.failed) return;
  const index = env.payload.index;
  if (t.mode === "public" && !s.channel) return void (t.failed = "no channel key to decrypt it");
  if (t.chunks.has(index)) return void (t.failed = `chunk ${index} arrived twice`);
  if (t.chunks.size > Math.ceil(t.size / 446) + 1) return void (t.failed = "more chunks than announced");
  t.chunks.set(index, null);
  if (!t.accepted) {
    // An RSA-4096 OAEP block carries at most 446 bytes in 683 base64url characters.
    t.heldChars += env.payload.ciphertext.length;
    if (t.heldChars > (Math.ceil(t.size / 446) + 16) * 683) {
      // More than the announced size can take: the offer ends now (nothing more is kept).
      t.held = [];
      t.failed = "more data than announced";
      s.incoming.delete(`${t.from}|${t.fileId}`);
      emitFile(s, t, null, t.failed);
      if (t.mode === "dm") s.run(refusalNotice(s, t.from, t.name, t.fileId, t.failed), false, false);
      return;
    }
    return void t.held.push({ index, ciphertext: env.payload.ciphertext });
  }
  decryptChunk(s, t, index, env.payload.ciphertext);
}

/** Decrypt one chunk of an accepted file (detached: chunks decrypt concurrently; the last one finishes it). */
function decryptChunk(s: CoreState, t: Incoming, index: number, ciphertext: string): void {
  t.pending++;
  s.run(
    (function* (): Task {
      const bytes = (yield {
        op: "decrypt",
        with: t.mode === "public" ? "channel" : "user",
        ciphertext,
      }) as
        | Uint8Array
        | null;
      t.pending--;
      if (!bytes) t.failed ??= `chunk ${index} could not be decrypted`;
      else {
        t.chunks.set(index, bytes);
        t.received += bytes.length;
        if (t.received > t.size) t.failed ??= "more data than announced";
        const pct = t.size ? Math.floor((t.received / t.size) * 10) : 10;
        if (pct > t.lastPct && !t.failed) {
          t.lastPct = pct;
          s.emit({
            kind: "fileProgress",
            fileId: t.fileId,
            name: t.name,
            received: t.received,
            size: t.size,
          });
        }
      }
      if (t.ended && t.pending === 0) yield* finishFile(s, t);
    })(),
    false,
    false,
  );
}

/**
 * The user accepted the offered file `fileId` from `from`: decrypt what arrived so far (and the rest as it
 * comes). False when there is no such offer.
 */
export function acceptFile(s: CoreState, from: string, fileId: string): boolean {
  const t = s.incoming.get(`${from}|${fileId}`);
  if (!t || t.accepted) return false;
  t.accepted = true;
  if (t.mode === "public" && !s.channel) t.failed ??= "no channel key to decrypt it";
  const held = t.held.splice(0);
  t.heldChars = 0;
  if (!t.failed) { for (const c of held) decryptChunk(s, t, c.index, c.ciphertext); }
  if (t.ended && t.pending === 0) {
    s.run(
      (function* (): Task {
        yield* finishFile(s, t);
      })(),
      false,
      false,
    );
  }
  return true;
}

/** The user declined the offered file: drop it (nothing was decrypted) and tell a DM sender. */
export function* declineFile(s: CoreState, from: string, fileId: string): Task {
  const k = `${from}|${fileId}`;
  const t = s.incoming.get(k);
  if (!t || t.accepted) return;
  s.incoming.delete(k);
  if (t.mode === "dm") yield* refusalNotice(s, t.from, t.name, t.fileId, "the receiver declined it");
}

/** The end of an incoming file. */
export function onFileEnd(s: CoreState, env: Envelope<"FILE_END">): void {
  const t = s.incoming.get(`${env.from}|${env.payload.file_id}`);
  if (!t || t.ended) return;
  t.ended = true;
  if (t.accepted && t.pending === 0) {
    s.run(
      (function* (): Task {
        yield* finishFile(s, t);
      })(),
      false,
      false,
    );
  }
}

/** Decrypt, assemble and check an incoming file. */
export function* finishFile(s: CoreState, t: Incoming): Task {
  const k = `${t.from}|${t.fileId}`;
  if (s.incoming.get(k) !== t) return;
  s.incoming.delete(k);
  const indexes = [...t.chunks.keys()].sort((a, b) => a - b);
  let problem = t.failed;
  if (!problem && indexes.some((v, i) => v !== i)) problem = "chunks are missing";
  let bytes: Uint8Array | null = null;
  if (!problem) {
    bytes = new Uint8Array(t.received);
    let o = 0;
    for (const i of indexes) {
      const part = t.chunks.get(i)!;
      bytes.set(part, o);
      o += part.length;
    }
    if (bytes.length !== t.size) problem = `size is ${bytes.length} bytes, ${t.size} announced`;
  }
  let sha: string | undefined;
  if (!problem && bytes) {
    sha = hex((yield { op: "sha256", data: bytes }) as Uint8Array);
    if (sha !== t.sha256) problem = "SHA-256 does not match";
  }
  emitFile(s, t, problem ? null : bytes, problem, sha);
  if (problem && t.mode === "dm") yield* refusalNotice(s, t.from, t.name, t.fileId, problem);
}

/** Report an incoming file (its bytes, or what went wrong). */
export function emitFile(
  s: CoreState,
  t: Incoming,
  bytes: Uint8Array | null,
  problem?: string,
  sha?: string,
): void {
  const e: ClientEvent = {
    kind: "file",
    fileId: t.fileId,
    from: t.from,
    fromName: s.nameOf(t.from),
    name: t.name,
    mode: t.mode,
    bytes,
    verified: t.verified,
  };
  if (problem) e.problem = problem;
  if (sha) e.sha256 = sha;
  s.emit(e);
}

/** Tell a file's sender we refused it (an end-to-end encrypted, signed DM; SOCP has no such error frame). */
export function* refusalNotice(
  s: CoreState,
  to: string,
  name: string,
  fileId: string,
  problem: string,
): Task {
  const peer = s.contacts.get(to);
  if (!peer?.pubkey || peer.pending || s.phase !== "online") return; // only ever to the pinned key
  const text = `[auto] could not accept "${
    name.replace(/"/g, "'").slice(0, 200)
  }" (file ${fileId}): ${problem}`;
  const m = newOutgoing(s, "dm", to, s.labelOf(to), text, s.now, false);
  yield* buildTask(s, m, peer.pubkey);
}
