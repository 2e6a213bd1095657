/**
 * The client core: everything a SOCP client knows of the protocol, with no sockets, no timers and no clock of its
 * own (sans-IO, like the server's reducer). Its inputs are the frames that arrive (text), the results of the
 * crypto operations it asked for, the time, and the user's actions; its outputs ({@linkcode Output}) are frames
 * to send, crypto requests and events. The Deno/browser shell ({@linkcode SocpClient}) runs the socket, the
 * timers and WebCrypto around it; tests drive it with frame sequences.
 *
 * What lives here: hello acceptance in every deployed form (PROFILE §15), the directory of users and keys (names
 * told apart by fingerprint), contacts, DMs and the public channel (signed, end-to-end encrypted), file
 * reassembly and the receiver's refusal notice, ACKs and the state of each message we send (sending, sent,
 * accepted, failed), and resending what was not accepted after a reconnect.
 *
 * Handlers are generators that `yield` a {@linkcode CryptoOp} and resume with its result; frames are handled one
 * at a time in arrival order (a file chunk's decryption runs detached so chunks decrypt concurrently).
 *
 * @example
 * ```ts
 * import { generateKeyPair } from "../crypto/rsa.ts";
 * import { WebCryptoRunner } from "./webcrypto.ts";
 *
 * const key = await generateKeyPair();
 * const core = new ClientCore({ userId: crypto.randomUUID(), publicKey: key.publicKey, displayName: "alice" });
 * const runner = new WebCryptoRunner(key);
 * core.opened(Date.now(), crypto.randomUUID()); // the socket opened: the core asks to sign its USER_HELLO
 * for (let outs = core.drain(); outs.length > 0; outs = core.drain()) {
 *   for (const o of outs) {
 *     if (o.kind === "crypto") core.cryptoDone(o.id, await runner.run(o.op), Date.now());
 *     if (o.kind === "send") console.log(JSON.parse(o.text).type); // "USER_HELLO": write it to the socket
 *   }
 * }
 * ```
 * @module
 */
import { decodeBase64Url } from "../protocol/base64url.ts";
import { signaturePreimages } from "../protocol/canonical_json.ts";
import { type AnyEnvelope, type Envelope, parseFrame, serializeEnvelope } from "../protocol/envelope.ts";
import { decodePublicKey, sameKeyMaterial } from "../protocol/keys.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import type { MessageType, PayloadOf } from "../protocol/messages.ts";
import {
  canonicalPayloadBytes,
  dmPreimage,
  dmPreimageVariants,
  fileStartPreimage,
  keySharePreimage,
  publicPreimage,
  publicPreimageVariants,
} from "../protocol/preimages.ts";
import { SOFTWARE } from "../version.ts";
import type {
  ClientEvent,
  Contact,
  CryptoOp,
  CryptoResult,
  OutgoingMessage,
  Output,
  Peer,
  SendState,
  TextMessageEvent,
} from "./types.ts";

export type * from "./types.ts";

/** Hello accepted after this long with no ERROR (PROFILE §15). */
export const HELLO_SILENCE_MS = 3000;
/** After acceptance, wait this long at most for our own advert (the end of the directory snapshot). */
export const SNAPSHOT_WAIT_MS = 1500;
/** A message that was on the wire is sent again after a reconnect only while the server's seen cache (10 min)
 * still drops the copy if the first one arrived, and its freshness check (10 min) still admits it. */
export const RESEND_WINDOW_MS = 8 * 60_000;
/** A message never sent is re-stamped (new ts, new signatures) when it waited longer than this. */
export const RESTAMP_AFTER_MS = 5 * 60_000;
/** Plaintext bytes per FILE_CHUNK: 16 OAEP blocks of an RSA-4096 key (PROFILE §9). */
export const FILE_CHUNK_BYTES = 16 * 446;
/** Largest frame text the core reads. */
const MAX_FRAME_CHARS = 4 * 1024 * 1024;
/** At most this many messages of ours are kept for states and resends. */
const MAX_OUTGOING = 2000;
/** The receiver's refusal notice, sent as an end-to-end encrypted DM (SOCP has no receiver-to-sender error). */
const REFUSAL_RE = /^\[auto\] could not accept "([^"]*)" \(file ([^)\s]+)\): ([\s\S]*)$/;

type Task = Generator<CryptoOp, void, CryptoResult>;

/** Options of a {@linkcode ClientCore}. */
export interface CoreOptions {
  /** The user id (a UUID) this core speaks for. */
  userId: string;
  /** Our public key string (base64url SPKI). */
  publicKey: string;
  /** Name shown to others in presence (default: the user id). */
  displayName?: string;
  /** The server id, when known before the hello (a USER_HELLO says `to` = it, else "*"). */
  serverId?: string;
  /** Largest file we send or accept (default 16 MiB, the server's default). */
  maxFileBytes?: number;
}

interface Outgoing extends OutgoingMessage {
  frame?: string;
  ref?: string;
  /** Written to a connection at least once. */
  wired: boolean;
  /** Time it was last written. */
  wiredAt: number;
}

interface Incoming {
  fileId: string;
  from: string;
  name: string;
  size: number;
  sha256: string;
  mode: "dm" | "public";
  chunks: Map<number, Uint8Array | null>;
  pending: number;
  received: number;
  lastPct: number;
  verified: boolean;
  failed: string | undefined;
  ended: boolean;
}

interface SendingFile {
  fileId: string;
  name: string;
  to: string;
  toLabel: string;
  encKey: string;
  data: Uint8Array;
  sent: number;
  chunks: number;
  state: "sending" | "ended" | "accepted" | "failed";
  reason?: string;
  ref?: string;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * The text of a received message: the decrypted bytes as strict UTF-8, or, when nothing was decrypted, a
 * "ciphertext" that is plain text (then `unencrypted`); null when neither.
 */
export function messageText(
  plain: Uint8Array | null,
  ciphertext: string,
): { text: string; unencrypted: boolean } | null {
  if (plain) {
    try {
      return { text: strictUtf8.decode(plain), unencrypted: false };
    } catch {
      return null;
    }
  }
  const text = plainTextOf(ciphertext);
  return text === null ? null : { text, unencrypted: true };
}

/** `ab12:cd34:…` from a SHA-256 digest (its first 16 bytes), as the node prints its own. */
export function formatFingerprint(digest: Uint8Array): string {
  return hex(digest.subarray(0, 16)).match(/.{4}/g)!.join(":");
}

/** Text that a "ciphertext" holds in the clear, if it is plain text (a deployed client sends that), else null. */
export function plainTextOf(ciphertext: string): string | null {
  const printable = (s: string) =>
    s.length > 0 && s.length <= 65536 &&
    // deno-lint-ignore no-control-regex
    !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffd]/.test(s);
  const bytes = decodeBase64Url(ciphertext);
  if (bytes) {
    try {
      const s = strictUtf8.decode(bytes);
      if (printable(s)) return s;
    } catch { /* not UTF-8 */ }
    return null;
  }
  return printable(ciphertext) ? ciphertext : null;
}

/** The client core (see the module documentation). */
export class ClientCore {
  /** Our user id. */
  readonly userId: string;
  /** Our public key (base64url SPKI). */
  readonly publicKey: string;
  /** Our display name, when we gave one. */
  readonly displayName?: string;
  /** Online users by id (including ourselves). */
  readonly directory = new Map<string, Peer>();
  /** Everyone we know (seen online now or in an earlier session), by id. */
  readonly contacts = new Map<string, Contact>();
  /** The server's id, once known ("" before). */
  serverId = "";
  /** The server's public key, once its hello reply gave it ("" before). */
  serverPub = "";
  /** The connection's phase. */
  phase: "offline" | "hello" | "online" | "refused" = "offline";
  /** True once the hello was accepted and the snapshot arrived (or did not within 1.5 s). */
  ready = false;
  /** The public channel, once a key share gave us its key. */
  channel: { creatorPub: string } | null = null;
  private serverSigns = false;
  private helloAt = 0;
  private acceptedAt = 0;
  private helloChecking = false;
  private readonly maxFileBytes: number;
  private out: Output[] = [];
  private seq = 0;
  private msgSeq = 0;
  private readonly waiting = new Map<number, { task: Task; inbound: boolean; ticket?: number }>();
  private readonly inbound: (() => Task)[] = [];
  private inboundBusy = false;
  private readonly outgoing: Outgoing[] = [];
  private readonly byRef = new Map<string, Outgoing>();
  private readonly incoming = new Map<string, Incoming>();
  private readonly sendingFiles = new Map<string, SendingFile>();
  private readonly seen = new Set<string>();
  private now = 0;

  /** A core for one user; nothing happens until the shell feeds it events. */
  constructor(opts: CoreOptions) {
    this.userId = opts.userId;
    this.publicKey = opts.publicKey;
    this.displayName = opts.displayName;
    this.serverId = opts.serverId ?? "";
    this.maxFileBytes = opts.maxFileBytes ?? 16 * 1024 * 1024;
  }

  /** Take the outputs produced so far (in order). */
  drain(): Output[] {
    const o = this.out;
    this.out = [];
    return o;
  }

  // ---------------------------------------------------------------- inputs: connection

  /** The socket opened: say hello (signed, with `ts` and a fresh `nonce` from the shell). */
  opened(now: number, nonce: string): void {
    this.now = now;
    this.phase = "hello";
    this.ready = false;
    this.serverSigns = false;
    this.helloChecking = false;
    this.helloAt = now;
    this.inbound.length = 0;
    const payload: PayloadOf<"USER_HELLO"> = {
      client: SOFTWARE,
      pubkey: this.publicKey,
      enc_pubkey: this.publicKey,
      ts: now,
      nonce,
    };
    if (this.displayName) payload.meta = { display_name: this.displayName };
    const to = this.serverId || "*";
    this.run(
      function* (this: ClientCore): Task {
        const sig = (yield { op: "sign", data: signaturePreimages(payload)[0] }) as string | null;
        if (this.phase !== "hello") return;
        this.emitSend({ type: "USER_HELLO", from: this.userId, to, ts: now, payload, sig: sig ?? "" });
      }.call(this),
      false,
      false,
    );
  }

  /** A text frame arrived. */
  frame(text: string, now: number): void {
    this.now = now;
    if (this.phase === "offline" || this.phase === "refused") return;
    if (text.length > MAX_FRAME_CHARS) {
      return this.emit({
        kind: "warning",
        detail: `ignored a frame of ${text.length} characters from the server`,
      });
    }
    if (this.phase === "hello" && !this.helloChecking) {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        return this.emit({ kind: "warning", detail: "unreadable frame from the server during the hello" });
      }
      if (!isObject(raw)) return;
      if (raw.type === "ERROR") {
        const p = isObject(raw.payload) ? raw.payload : {};
        return this.refuse(
          typeof p.code === "string" ? p.code : "ERROR",
          typeof p.detail === "string" ? p.detail : typeof p.message === "string" ? p.message : "",
        );
      }
      this.helloChecking = true;
      const rawObj = raw;
      this.enqueue(() => this.acceptHello(rawObj, text));
      return;
    }
    this.enqueue(() => this.handleText(text));
  }

  /** Time passes: the 3 s hello rule and the snapshot wait. Call it every few hundred milliseconds. */
  tick(now: number): void {
    this.now = now;
    if (this.phase === "hello" && !this.helloChecking && now - this.helloAt >= HELLO_SILENCE_MS) {
      this.accepted(now);
      this.becomeReady(); // a server that says nothing sends no snapshot either
    }
    if (this.phase === "online" && !this.ready && now - this.acceptedAt >= SNAPSHOT_WAIT_MS) {
      this.becomeReady();
    }
  }

  /** The socket closed. Incoming transfers are lost; our messages not accepted are sent again on reconnect. */
  closed(now: number, code: number, reason: string): void {
    this.now = now;
    const was = this.phase;
    if (was === "offline") return;
    this.phase = was === "refused" ? "refused" : "offline";
    this.ready = false;
    this.helloChecking = false;
    this.inbound.length = 0;
    this.directory.clear();
    for (const t of this.incoming.values()) {
      this.emitFile(t, null, "the connection was lost before the file was complete");
    }
    this.incoming.clear();
    for (const f of this.sendingFiles.values()) {
      if (f.state === "sending" || f.state === "ended") this.failFile(f, "the connection was lost");
    }
    if (was !== "refused") this.emit({ kind: "closed", code, reason });
  }

  /** The result of the crypto operation `id`. */
  cryptoDone(id: number, result: CryptoResult, now: number): void {
    this.now = now;
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    this.step(w.task, result, w.inbound, w.ticket);
  }

  // ---------------------------------------------------------------- inputs: contacts and lookups

  /** Contacts the shell kept from earlier sessions. */
  addContacts(list: Iterable<Contact>): void {
    for (const c of list) {
      if (!c || typeof c.userId !== "string" || typeof c.pubkey !== "string") continue;
      if (!this.contacts.has(c.userId)) {
        this.contacts.set(c.userId, {
          userId: c.userId,
          name: String(c.name ?? c.userId),
          pubkey: c.pubkey,
          fingerprint: String(c.fingerprint ?? ""),
          serverId: String(c.serverId ?? ""),
        });
      }
    }
  }

  /** `name`, or `name#abcd` when another known user has the same name (case-insensitive). */
  labelOf(userId: string): string {
    const who = this.directory.get(userId) ?? this.contacts.get(userId);
    if (!who) return userId;
    const name = who.name.toLowerCase();
    for (const pool of [this.directory, this.contacts]) {
      for (const other of pool.values()) {
        if (other.userId !== userId && other.name.toLowerCase() === name) {
          const fp = who.fingerprint.replace(/:/g, "");
          return `${who.name}#${fp ? fp.slice(0, 4) : userId.slice(0, 4)}`;
        }
      }
    }
    return who.name;
  }

  /** The online users, sorted by display label then user id (PROFILE §6). */
  list(): Peer[] {
    return [...this.directory.values()].map((p) => ({ ...p, label: this.labelOf(p.userId) })).sort((a, b) =>
      a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
    );
  }

  /**
   * Find a user by id, `name#abcd` label, or display name (case-insensitive): online users first, then contacts.
   * Throws with a message for the user when there is none or more than one.
   */
  resolve(target: string): Contact & { online: boolean; label: string } {
    const t = target.trim();
    const found = (c: Contact) => ({
      ...c,
      online: this.directory.has(c.userId),
      label: this.labelOf(c.userId),
    });
    const byId = this.directory.get(t) ?? this.contacts.get(t);
    if (byId) return found(byId);
    const hash = t.lastIndexOf("#");
    for (const pool of [this.directory, this.contacts]) {
      let matches = [...pool.values()].filter((p) => p.name.toLowerCase() === t.toLowerCase());
      if (matches.length === 0 && hash > 0) {
        const name = t.slice(0, hash).toLowerCase();
        const fp = t.slice(hash + 1).toLowerCase();
        matches = [...pool.values()].filter((p) =>
          p.name.toLowerCase() === name && fp.length > 0 &&
          (p.fingerprint.replace(/:/g, "").startsWith(fp) || p.userId.toLowerCase().startsWith(fp))
        );
      }
      if (matches.length === 1) return found(matches[0]);
      if (matches.length > 1) {
        throw new Error(
          `"${t}" is ambiguous: ${matches.map((m) => this.labelOf(m.userId)).join(", ")}; use one of these`,
        );
      }
    }
    throw new Error(`no user "${t}" has been seen online (see /list)`);
  }

  /** Messages of ours still tracked (most recent last). */
  messages(): OutgoingMessage[] {
    return this.outgoing.map((m) => this.view(m));
  }

  /** The state of one of our messages. */
  message(id: string): OutgoingMessage | undefined {
    const m = this.outgoing.find((o) => o.id === id);
    return m && this.view(m);
  }

  // ---------------------------------------------------------------- inputs: the user's actions

  /**
   * Send an end-to-end encrypted, signed DM (PROFILE §4, §15). Returns the message (state "sending"; events
   * follow as it changes) and the ticket settled once it is built. Throws when the user is unknown or has no key.
   */
  tell(target: string, text: string, now: number): { message: OutgoingMessage; ticket: number } {
    this.now = now;
    const peer = this.resolve(target);
    if (!peer.pubkey) {
      throw new Error(`no public key known for ${peer.label} (its server does not advertise keys)`);
    }
    const m = this.newOutgoing("dm", peer.userId, peer.label, text, now, !peer.online);
    return { message: this.view(m), ticket: this.build(m, peer.pubkey) };
  }

  /** Send to the public channel (encrypted to the channel key, signed). Throws before the channel key arrived. */
  all(text: string, now: number): { message: OutgoingMessage; ticket: number } {
    this.now = now;
    if (!this.channel) throw new Error("the public channel key has not arrived yet; try again in a moment");
    const m = this.newOutgoing("public", "public", "everyone", text, now, false);
    return { message: this.view(m), ticket: this.build(m, this.channel.creatorPub) };
  }

  /**
   * Start sending a file to a user or ("public") to everyone: checks the size and the recipient, then signs and
   * sends FILE_START. The shell then calls {@linkcode fileChunk} for each chunk (pacing them) and
   * {@linkcode fileEnd}; {@linkcode fileProblem} says when to stop.
   */
  startFile(
    target: string,
    name: string,
    data: Uint8Array,
    now: number,
    fileId: string,
  ): { fileId: string; chunks: number; ticket: number } {
    this.now = now;
    if (data.length > this.maxFileBytes) {
      throw new Error(`"${name}" is ${mib(data.length)}; the limit is ${mib(this.maxFileBytes)}`);
    }
    if (this.phase !== "online") throw new Error("not connected: files are sent only while connected");
    const pub = target === "public";
    let to = "public", toLabel = "everyone", encKey: string;
    if (pub) {
      if (!this.channel) throw new Error("the public channel key has not arrived yet; try again in a moment");
      encKey = this.channel.creatorPub;
    } else {
      const peer = this.resolve(target);
      if (!peer.pubkey) {
        throw new Error(`no public key known for ${peer.label} (its server does not advertise keys)`);
      }
      if (!peer.online) throw new Error(`${peer.label} is not online; files are not queued`);
      to = peer.userId;
      toLabel = peer.label;
      encKey = peer.pubkey;
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
    this.sendingFiles.set(fileId, f);
    if (this.sendingFiles.size > 256) this.sendingFiles.delete(this.sendingFiles.keys().next().value!);
    const ticket = this.run(
      function* (this: ClientCore): Task {
        const sha = hex((yield { op: "sha256", data }) as Uint8Array);
        const ts = this.now;
        const content_sig = (yield {
          op: "sign",
          data: fileStartPreimage({
            file_id: fileId,
            sha256: sha,
            size: data.length,
            from: this.userId,
            to: pub ? undefined : to,
            ts,
          }),
        }) as string | null;
        if (!content_sig) throw new Error("could not sign the file");
        if (f.state !== "sending") throw new Error(f.reason ?? "stopped");
        if (this.phase !== "online") throw new Error("not connected");
        this.emitSend({
          type: "FILE_START",
          from: this.userId,
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
      }.call(this),
      false,
    );
    return { fileId, chunks: f.chunks, ticket };
  }

  /** Encrypt and send chunk `index` of a file started with {@linkcode startFile}. */
  fileChunk(fileId: string, index: number, now: number): number {
    this.now = now;
    const f = this.sendingFiles.get(fileId);
    return this.run(
      function* (this: ClientCore): Task {
        if (!f || f.state !== "sending") throw new Error(f?.reason ?? "no such transfer");
        const part = f.data.subarray(index * FILE_CHUNK_BYTES, (index + 1) * FILE_CHUNK_BYTES);
        const ciphertext = (yield { op: "encrypt", key: f.encKey, data: part }) as string | null;
        if (!ciphertext) throw new Error("the recipient's key is not a usable RSA public key");
        if (f.state !== "sending") throw new Error(f.reason ?? "stopped");
        if (this.phase !== "online") throw new Error("not connected");
        this.emitSend({
          type: "FILE_CHUNK",
          from: this.userId,
          to: f.to,
          ts: this.now,
          payload: { file_id: fileId, index, ciphertext },
        });
        f.sent = Math.min(f.data.length, f.sent + part.length);
        this.emit({ kind: "fileSendProgress", fileId, name: f.name, sent: f.sent, size: f.data.length });
      }.call(this),
      false,
    );
  }

  /** Send FILE_END; the server ACKs it once the whole file is relayed (state "accepted"). */
  fileEnd(fileId: string, now: number): number {
    this.now = now;
    const f = this.sendingFiles.get(fileId);
    return this.run(
      function* (this: ClientCore): Task {
        if (!f || f.state !== "sending") throw new Error(f?.reason ?? "no such transfer");
        const payload = { file_id: fileId };
        f.ref = msgRef((yield { op: "sha256", data: canonicalPayloadBytes(payload) }) as Uint8Array);
        if (this.phase !== "online") throw new Error("not connected");
        f.state = "ended";
        f.data = new Uint8Array(0);
        this.emitSend({ type: "FILE_END", from: this.userId, to: f.to, ts: this.now, payload });
      }.call(this),
      false,
    );
  }

  /** Why a transfer of ours stopped (refused, connection lost), or undefined while it goes on. */
  fileProblem(fileId: string): string | undefined {
    const f = this.sendingFiles.get(fileId);
    return !f ? "no such transfer" : f.state === "failed" ? f.reason : undefined;
  }

  /** A CTRL_CLOSE frame to say goodbye. */
  goodbye(now: number): string {
    return serializeEnvelope({
      type: "CTRL_CLOSE",
      from: this.userId,
      to: this.serverId,
      ts: now,
      payload: {},
    });
  }

  // ---------------------------------------------------------------- the task runner

  /** Run a task; with `ticketed`, a `settled` output reports its end under the returned ticket. */
  private run(task: Task, inbound: boolean, ticketed = true): number {
    const ticket = ticketed ? ++this.seq : undefined;
    this.step(task, undefined as unknown as CryptoResult, inbound, ticket);
    return ticket ?? 0;
  }

  /** Queue an inbound task; inbound frames are handled one at a time, in order. */
  private enqueue(make: () => Task): void {
    this.inbound.push(make);
    if (!this.inboundBusy) this.pump();
  }

  /** Run queued inbound tasks until one waits for crypto. */
  private pump(): void {
    while (!this.inboundBusy && this.inbound.length > 0) {
      const make = this.inbound.shift()!;
      this.inboundBusy = true;
      let task: Task;
      try {
        task = make();
      } catch (e) {
        this.inboundBusy = false;
        this.emit({ kind: "warning", detail: `a frame could not be handled: ${(e as Error).message}` });
        continue;
      }
      this.step(task, undefined as unknown as CryptoResult, true, undefined);
    }
  }

  /** Advance a task with the result of its last crypto operation. */
  private step(task: Task, value: CryptoResult, inbound: boolean, ticket: number | undefined): void {
    let r: IteratorResult<CryptoOp, void>;
    try {
      r = task.next(value);
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      if (ticket !== undefined) this.out.push({ kind: "settled", ticket, error: msg });
      else this.emit({ kind: "warning", detail: `a frame could not be handled: ${msg}` });
      if (inbound) {
        this.inboundBusy = false;
        this.pump();
      }
      return;
    }
    if (r.done) {
      if (ticket !== undefined) this.out.push({ kind: "settled", ticket });
      if (inbound) {
        this.inboundBusy = false;
        this.pump();
      }
      return;
    }
    const id = ++this.seq;
    this.waiting.set(id, { task, inbound, ticket });
    this.out.push({ kind: "crypto", id, op: r.value });
  }

  // ---------------------------------------------------------------- outputs

  /** Report an event to the shell. */
  private emit(event: ClientEvent): void {
    this.out.push({ kind: "event", event });
  }

  /** Ask the shell to send a frame. */
  private emitSend(env: Envelope): void {
    this.out.push({ kind: "send", text: serializeEnvelope(env) });
  }

  // ---------------------------------------------------------------- hello

  /** The server refused our hello: stop and report. */
  private refuse(code: string, detail: string): void {
    this.phase = "refused";
    this.emit({ kind: "refused", code, detail });
  }

  /** Check the server's hello reply (every deployed form, PROFILE §15). */
  private *acceptHello(raw: Record<string, unknown>, text: string): Task {
    const p = isObject(raw.payload) ? raw.payload : {};
    const sid = typeof p.server_id === "string" && p.server_id
      ? p.server_id
      : typeof raw.from === "string" && raw.from
      ? raw.from
      : "";
    const spub = typeof p.server_pub === "string" && p.server_pub
      ? p.server_pub
      : typeof p.pubkey === "string" && p.pubkey && raw.type !== "USER_ADVERTISE"
      ? p.pubkey
      : "";
    if (spub && decodePublicKey(spub).ok && typeof raw.sig === "string" && raw.sig) {
      const i = (yield { op: "verify", key: spub, preimages: signaturePreimages(p), sig: raw.sig }) as number;
      if (i < 0) {
        this.helloChecking = false;
        return this.refuse(
          "INVALID_SIG",
          "the server's answer to our hello is signed, but not by the key it presented",
        );
      }
      this.serverSigns = true;
    }
    this.helloChecking = false;
    if (this.phase !== "hello") return;
    if (sid) this.serverId = sid;
    if (spub && decodePublicKey(spub).ok) this.serverPub = spub;
    this.accepted(this.now);
    // The accepting frame may carry more than acceptance (a CLIENT_WELCOME, an advert): handle it too.
    if (raw.type !== "ACK") {
      yield* this.handleText(text);
    }
  }

  /** The hello was accepted: we are online. */
  private accepted(now: number): void {
    this.phase = "online";
    this.acceptedAt = now;
  }

  /** Hello accepted and the snapshot in: who is online is known again, so send what waited. */
  private becomeReady(): void {
    if (this.ready) return;
    this.ready = true;
    this.flushOutgoing(this.now);
    this.emit({ kind: "ready", serverId: this.serverId });
  }

  // ---------------------------------------------------------------- frames

  /** Handle one inbound frame's text. */
  private *handleText(text: string): Task {
    const r = parseFrame(text);
    if (!r.ok) {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch { /* reported below */ }
      if (isObject(raw) && raw.type === "PUBLIC_CHANNEL_KEY_SHARE") return yield* this.onKeyShareRaw(raw);
      if (isObject(raw) && raw.type === "CLIENT_WELCOME") {
        const p = isObject(raw.payload) ? raw.payload : {};
        if (typeof p.server_id === "string" && p.server_id) this.serverId = p.server_id;
        return;
      }
      if (
        isObject(raw) && typeof raw.type === "string" && r.error.detail.startsWith("unknown message type")
      ) {
        return; // a deployed extension we do not use
      }
      return this.emit({ kind: "warning", detail: `unreadable frame from the server: ${r.error.detail}` });
    }
    const env = r.envelope;
    let sigOk = false;
    if (env.from === this.serverId) {
      if (env.sig && this.serverPub) {
        sigOk = ((yield {
          op: "verify",
          key: this.serverPub,
          preimages: signaturePreimages(env.payload),
          sig: env.sig,
        }) as number) >= 0;
        if (!sigOk) {
          return this.emit({
            kind: "warning",
            detail: `dropped a ${env.type} whose server signature does not verify`,
          });
        }
      } else if (this.serverSigns) {
        return this.emit({ kind: "warning", detail: `dropped an unsigned ${env.type} from our server` });
      }
    }
    yield* this.dispatch(env, sigOk);
  }

  /** Route a parsed frame to its handler. */
  private *dispatch(env: AnyEnvelope, sigOk: boolean): Task {
    switch (env.type) {
      case "USER_ADVERTISE":
        return yield* this.onAdvertise(env, sigOk);
      case "USER_REMOVE": {
        const peer = this.directory.get(env.payload.user_id);
        if (peer && peer.serverId === env.payload.server_id) {
          this.directory.delete(peer.userId);
          this.emit({ kind: "left", peer });
        }
        return;
      }
      case "USER_DELIVER":
        return yield* this.onDeliver(env);
      case "PUBLIC_CHANNEL_KEY_SHARE":
        return yield* this.onKeyShareRaw(env as unknown as Record<string, unknown>);
      case "MSG_PUBLIC_CHANNEL":
        return yield* this.onPublic(env);
      case "FILE_START":
        return yield* this.onFileStart(env);
      case "FILE_CHUNK":
        return this.onFileChunk(env);
      case "FILE_END":
        return this.onFileEnd(env);
      case "ERROR":
        return this.onError(env.payload.code, env.payload.detail ?? "");
      case "ACK":
        return this.onAck(env.payload.msg_ref);
      default:
        return;
    }
  }

  /** A presence advert: update the directory and contacts. */
  private *onAdvertise(env: Envelope<"USER_ADVERTISE">, sigOk: boolean): Task {
    const p = env.payload;
    const pubkey = p.pubkey ?? (typeof p.meta?.pubkey === "string" ? p.meta.pubkey : "");
    const name = typeof p.meta?.display_name === "string" && p.meta.display_name
      ? p.meta.display_name.slice(0, 128)
      : p.user_id;
    let fingerprint = "";
    const d = pubkey ? decodePublicKey(pubkey) : null;
    if (d?.ok) fingerprint = formatFingerprint((yield { op: "sha256", data: d.key.spki }) as Uint8Array);
    const peer: Peer = {
      userId: p.user_id,
      serverId: p.server_id,
      name,
      label: name,
      pubkey: d?.ok ? pubkey : "",
      fingerprint,
      verified: sigOk,
    };
    const had = this.directory.has(p.user_id);
    this.directory.set(p.user_id, peer);
    peer.label = this.labelOf(p.user_id);
    if (p.user_id !== this.userId && peer.pubkey) {
      const old = this.contacts.get(p.user_id);
      const contact: Contact = {
        userId: p.user_id,
        name,
        pubkey: peer.pubkey,
        fingerprint,
        serverId: p.server_id,
      };
      if (
        !old || old.name !== name || old.pubkey !== contact.pubkey || old.serverId !== contact.serverId ||
        old.fingerprint !== fingerprint
      ) {
        this.contacts.set(p.user_id, contact);
        this.emit({ kind: "contact", contact });
      }
    }
    if (!had) this.emit({ kind: "joined", peer });
    if (p.user_id === this.userId && this.phase === "online") this.becomeReady();
  }

  /** PROFILE §4: the key a message claims must be the key presence announced for its sender. */
  private senderKeyWarning(sender: string, senderPub: string): string | undefined {
    const known = this.directory.get(sender) ?? this.contacts.get(sender);
    return known?.pubkey && !sameKeyMaterial(known.pubkey, senderPub)
      ? `sender_pub differs from the key announced for ${this.labelOf(sender)}`
      : undefined;
  }

  /** The name to show for a user id. */
  private nameOf(userId: string): string {
    return (this.directory.get(userId) ?? this.contacts.get(userId))?.name ?? userId;
  }

  /** True the first time a message (by sender, ts and signature) is seen: resends after a reconnect show once. */
  private firstSight(key: string): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    if (this.seen.size > 20_000) this.seen.delete(this.seen.values().next().value!);
    return true;
  }

  /** A delivered DM (or file frame inside one): verify, decrypt, report. */
  private *onDeliver(env: Envelope<"USER_DELIVER">): Task {
    const p = env.payload;
    if (!this.firstSight(`dm|${p.sender}|${env.ts}|${p.content_sig}`)) return;
    const [plain, idx] = (yield {
      op: "all",
      ops: [
        { op: "decrypt", with: "user", ciphertext: p.ciphertext },
        {
          op: "verify",
          key: p.sender_pub,
          preimages: dmPreimageVariants({
            ciphertext: p.ciphertext,
            from: p.sender,
            to: this.userId,
            ts: env.ts,
          }),
          sig: p.content_sig,
        },
      ],
    }) as [Uint8Array | null, number];
    const body = messageText(plain, p.ciphertext);
    if (!body) {
      return this.emit({
        kind: "warning",
        detail: `a message from ${this.labelOf(p.sender)} could not be decrypted`,
      });
    }
    const { text } = body;
    const warning = this.senderKeyWarning(p.sender, p.sender_pub);
    const verified = idx >= 0 && !warning;
    const refusal = REFUSAL_RE.exec(text);
    if (refusal && verified) {
      const f = this.sendingFiles.get(refusal[2]);
      if (f && f.to === p.sender) {
        if (f.state !== "failed") this.failFile(f, `${f.toLabel} refused it: ${refusal[3]}`);
        return;
      }
    }
    this.emit({ kind: "dm", ...this.textEvent(p.sender, body, env.ts, verified, warning) });
  }

  /** The fields of a received text message event. */
  private textEvent(
    from: string,
    body: { text: string; unencrypted: boolean },
    ts: number,
    verified: boolean,
    warning: string | undefined,
  ): TextMessageEvent {
    const e: TextMessageEvent = {
      from,
      fromName: this.nameOf(from),
      fromLabel: this.labelOf(from),
      text: body.text,
      ts,
      verified,
    };
    if (body.unencrypted) e.unencrypted = true;
    if (warning) e.warning = warning;
    return e;
  }

  /** A public-channel key share: unwrap the channel key. */
  private *onKeyShareRaw(raw: Record<string, unknown>): Task {
    const p = isObject(raw.payload) ? raw.payload : {};
    const creatorPub = typeof p.creator_pub === "string" ? p.creator_pub : "";
    const shares = Array.isArray(p.shares) ? p.shares : [];
    const mine = shares.find((s) => isObject(s) && s.member === this.userId) as
      | Record<string, unknown>
      | undefined;
    if (!mine || !creatorPub) return;
    const wrapped = [mine.wrapped_public_channel_key, mine.wrapped_key, mine.wrapped].find((w) =>
      typeof w === "string" && w
    ) as string | undefined;
    if (!wrapped) return;
    const sig = typeof p.content_sig === "string" ? p.content_sig : "";
    if (
      !sig ||
      ((yield {
          op: "verify",
          key: creatorPub,
          preimages: [keySharePreimage(shares, creatorPub)],
          sig,
        }) as number) <
        0
    ) {
      return this.emit({
        kind: "warning",
        detail: "ignored a public channel key share whose signature does not verify",
      });
    }
    const ok = (yield { op: "openChannelKey", wrapped, creatorPub }) as boolean;
    if (!ok) {
      return this.emit({ kind: "warning", detail: "the public channel key share could not be opened" });
    }
    const fresh = this.channel?.creatorPub !== creatorPub;
    this.channel = { creatorPub };
    if (fresh) this.emit({ kind: "channel", version: 0 });
  }

  /** A public-channel message: verify, decrypt, report. */
  private *onPublic(env: Envelope<"MSG_PUBLIC_CHANNEL">): Task {
    if (env.from === this.userId) return;
    const p = env.payload;
    if (!this.firstSight(`all|${env.from}|${env.ts}|${p.content_sig}`)) return;
    const forms = publicPreimageVariants({ ciphertext: p.ciphertext, from: env.from, ts: env.ts });
    const verify: CryptoOp = { op: "verify", key: p.sender_pub, preimages: forms, sig: p.content_sig };
    let plain: Uint8Array | null = null;
    let idx: number;
    if (this.channel) {
      [plain, idx] = (yield {
        op: "all",
        ops: [{ op: "decrypt", with: "channel", ciphertext: p.ciphertext }, verify],
      }) as [Uint8Array | null, number];
    } else idx = (yield verify) as number;
    const body = messageText(plain, p.ciphertext);
    if (!body) {
      return this.emit({
        kind: "warning",
        detail: this.channel
          ? `a public message from ${this.labelOf(env.from)} could not be decrypted`
          : `a public message from ${this.labelOf(env.from)} arrived before the channel key`,
      });
    }
    const warning = this.senderKeyWarning(env.from, p.sender_pub);
    this.emit({ kind: "public", ...this.textEvent(env.from, body, env.ts, idx >= 0 && !warning, warning) });
  }

  // ---------------------------------------------------------------- files we receive

  /** An incoming file announcement. */
  private *onFileStart(env: Envelope<"FILE_START">): Task {
    const p = env.payload;
    const k = `${env.from}|${p.file_id}`;
    const label = this.labelOf(env.from);
    if (this.incoming.has(k)) return;
    if (this.incoming.size >= 64 || p.size > this.maxFileBytes) {
      const problem = this.incoming.size >= 64
        ? "too many transfers at once"
        : `it is ${mib(p.size)}; the limit is ${mib(this.maxFileBytes)}`;
      this.emit({ kind: "warning", detail: `refused "${p.name}" from ${label}: ${problem}` });
      if (p.mode === "dm") yield* this.refusalNotice(env.from, p.name, p.file_id, problem);
      return;
    }
    const known = (this.directory.get(env.from) ?? this.contacts.get(env.from))?.pubkey;
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
    this.incoming.set(k, {
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
    });
    this.emit({
      kind: "fileStart",
      fileId: p.file_id,
      from: env.from,
      fromName: this.nameOf(env.from),
      name: p.name,
      size: p.size,
      mode: p.mode,
    });
  }

  /** One chunk of an incoming file. */
  private onFileChunk(env: Envelope<"FILE_CHUNK">): void {
    const t = this.incoming.get(`${env.from}|${env.payload.file_id}`);
    if (!t || t.failed) return;
    const index = env.payload.index;
    if (t.mode === "public" && !this.channel) return void (t.failed = "no channel key to decrypt it");
    if (t.chunks.has(index)) return void (t.failed = `chunk ${index} arrived twice`);
    if (t.chunks.size > Math.ceil(t.size / 446) + 1) return void (t.failed = "more chunks than announced");
    t.chunks.set(index, null);
    t.pending++;
    // Detached: chunks decrypt concurrently; FILE_END completes once all of them are done.
    this.run(
      function* (this: ClientCore): Task {
        const bytes = (yield {
          op: "decrypt",
          with: t.mode === "public" ? "channel" : "user",
          ciphertext: env.payload.ciphertext,
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
            this.emit({
              kind: "fileProgress",
              fileId: t.fileId,
              name: t.name,
              received: t.received,
              size: t.size,
            });
          }
        }
        if (t.ended && t.pending === 0) yield* this.finishFile(t);
      }.call(this),
      false,
      false,
    );
  }

  /** The end of an incoming file. */
  private onFileEnd(env: Envelope<"FILE_END">): void {
    const t = this.incoming.get(`${env.from}|${env.payload.file_id}`);
    if (!t || t.ended) return;
    t.ended = true;
    if (t.pending === 0) {
      this.run(
        function* (this: ClientCore): Task {
          yield* this.finishFile(t);
        }.call(this),
        false,
        false,
      );
    }
  }

  /** Decrypt, assemble and check an incoming file. */
  private *finishFile(t: Incoming): Task {
    const k = `${t.from}|${t.fileId}`;
    if (this.incoming.get(k) !== t) return;
    this.incoming.delete(k);
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
    this.emitFile(t, problem ? null : bytes, problem, sha);
    if (problem && t.mode === "dm") yield* this.refusalNotice(t.from, t.name, t.fileId, problem);
  }

  /** Report an incoming file (its bytes, or what went wrong). */
  private emitFile(t: Incoming, bytes: Uint8Array | null, problem?: string, sha?: string): void {
    const e: ClientEvent = {
      kind: "file",
      fileId: t.fileId,
      from: t.from,
      fromName: this.nameOf(t.from),
      name: t.name,
      mode: t.mode,
      bytes,
      verified: t.verified,
    };
    if (problem) e.problem = problem;
    if (sha) e.sha256 = sha;
    this.emit(e);
  }

  /** Tell a file's sender we refused it (an end-to-end encrypted, signed DM; SOCP has no such error frame). */
  private *refusalNotice(to: string, name: string, fileId: string, problem: string): Task {
    const peer = this.directory.get(to) ?? this.contacts.get(to);
    if (!peer?.pubkey || this.phase !== "online") return;
    const text = `[auto] could not accept "${
      name.replace(/"/g, "'").slice(0, 200)
    }" (file ${fileId}): ${problem}`;
    const m = this.newOutgoing("dm", to, this.labelOf(to), text, this.now, false);
    yield* this.buildTask(m, peer.pubkey);
  }

  // ---------------------------------------------------------------- what the server tells us about ours

  /** The server ACKed one of our frames (by msg_ref). */
  private onAck(msgRef: string): void {
    const m = this.byRef.get(msgRef);
    if (m) {
      this.byRef.delete(msgRef);
      if (m.state !== "accepted") this.setState(m, "accepted");
      this.emit({ kind: "ack", msgRef, what: `message to ${m.toLabel}` });
      return;
    }
    for (const f of this.sendingFiles.values()) {
      if (f.ref === msgRef && f.state === "ended") {
        f.state = "accepted";
        this.emit({ kind: "ack", msgRef, what: `file ${f.name} to ${f.toLabel}` });
        return;
      }
    }
  }

  /** An ERROR from the server: fail the message or transfer it names. */
  private onError(code: string, detail: string): void {
    // A refusal that names one of our transfers stops it, once; the server's later refusals of its chunks
    // (one per chunk already on the wire) are not news.
    for (const f of this.sendingFiles.values()) {
      const named = detail.includes(f.fileId) ||
        (f.state === "sending" && detail.includes(`"${f.name.slice(0, 64)}"`)) ||
        (f.state === "sending" && code === "USER_NOT_FOUND" && f.to !== "public" && detail.includes(f.to));
      if (!named) continue;
      if (f.state === "sending" || f.state === "ended") this.failFile(f, `${code}: ${detail}`);
      return;
    }
    // The server dropped a transfer coming to us (it tells the recipient too): end it here, once.
    for (const [k, t] of this.incoming) {
      if (!detail.includes(t.fileId)) continue;
      this.incoming.delete(k);
      return this.emitFile(t, null, `the server dropped it: ${detail}`);
    }
    if (code === "USER_NOT_FOUND" || code === "UNKNOWN_TYPE") {
      // Refusals come right after the frame they refuse: the latest DM to that user still only "sent".
      const m = this.outgoing.findLast((o) => o.kind === "dm" && o.state === "sent" && detail.includes(o.to));
      if (m) {
        m.error = `${code}: ${detail}`;
        if (m.ref) this.byRef.delete(m.ref);
        return this.setState(m, "failed");
      }
    }
    this.emit({ kind: "error", code, detail });
  }

  /** Mark an outgoing file as failed and drop its bytes. */
  private failFile(f: SendingFile, reason: string): void {
    f.state = "failed";
    f.reason = reason;
    f.data = new Uint8Array(0);
    this.emit({ kind: "fileRefused", fileId: f.fileId, name: f.name, to: f.to, reason });
  }

  // ---------------------------------------------------------------- messages we send

  /** Record a new outgoing message. */
  private newOutgoing(
    kind: "dm" | "public",
    to: string,
    toLabel: string,
    text: string,
    now: number,
    recipientOffline: boolean,
  ): Outgoing {
    const m: Outgoing = {
      id: `m${++this.msgSeq}`,
      kind,
      to,
      toLabel,
      text,
      ts: now,
      state: "sending",
      resent: false,
      recipientOffline,
      wired: false,
      wiredAt: 0,
    };
    this.outgoing.push(m);
    while (this.outgoing.length > MAX_OUTGOING) {
      const old = this.outgoing.shift()!;
      if (old.ref) this.byRef.delete(old.ref);
    }
    this.emit({ kind: "message", message: this.view(m) });
    return m;
  }

  /** The user-facing view of an outgoing message. */
  private view(m: Outgoing): OutgoingMessage {
    const v: OutgoingMessage = {
      id: m.id,
      kind: m.kind,
      to: m.to,
      toLabel: m.toLabel,
      text: m.text,
      ts: m.ts,
      state: m.state,
      resent: m.resent,
      recipientOffline: m.recipientOffline,
    };
    if (m.error) v.error = m.error;
    return v;
  }

  /** Change an outgoing message's state and report it. */
  private setState(m: Outgoing, state: SendState): void {
    m.state = state;
    this.emit({ kind: "message", message: this.view(m) });
  }

  /** Start encrypting and signing an outgoing message; returns the task's id. */
  private build(m: Outgoing, encKey: string): number {
    return this.run(this.buildTask(m, encKey), false);
  }

  /** Encrypt, sign (content_sig and the frame's sig, PROFILE §15) and send or keep for the connection. */
  private *buildTask(m: Outgoing, encKey: string): Task {
    const ts = m.ts;
    const ciphertext = (yield { op: "encrypt", key: encKey, data: utf8.encode(m.text) }) as string | null;
    if (!ciphertext) {
      m.error = "the recipient's key is not a usable RSA public key";
      this.setState(m, "failed");
      throw new Error(m.error);
    }
    const content_sig = (yield {
      op: "sign",
      data: m.kind === "dm"
        ? dmPreimage({ ciphertext, from: this.userId, to: m.to, ts })
        : publicPreimage({ ciphertext, from: this.userId, ts }),
    }) as string | null;
    const payload = { ciphertext, sender_pub: this.publicKey, content_sig: content_sig ?? "" };
    const bytes = canonicalPayloadBytes(payload);
    const [sig, digest] = (yield {
      op: "all",
      ops: [{ op: "sign", data: bytes }, { op: "sha256", data: bytes }],
    }) as [string | null, Uint8Array];
    if (!content_sig || !sig) {
      m.error = "could not sign the message";
      this.setState(m, "failed");
      throw new Error(m.error);
    }
    const type: MessageType = m.kind === "dm" ? "MSG_DIRECT" : "MSG_PUBLIC_CHANNEL";
    m.frame = serializeEnvelope({ type, from: this.userId, to: m.to, ts, payload, sig } as Envelope);
    if (m.kind === "dm") {
      m.ref = msgRef(digest);
      this.byRef.set(m.ref, m);
    }
    if (this.phase === "online" && this.ready) this.wire(m, this.now);
  }

  /** Write an outgoing message's frame to the connection. */
  private wire(m: Outgoing, now: number): void {
    if (!m.frame) return;
    const again = m.wired;
    if (m.kind === "dm" && !again) m.recipientOffline = !this.directory.has(m.to);
    m.wired = true;
    m.wiredAt = now;
    this.out.push({ kind: "send", text: m.frame });
    if (again) m.resent = true;
    if (m.state === "sending" || again) this.setState(m, "sent");
  }

  /** On (re)acceptance: send what never left, and again what left but was not accepted (recent ones). */
  private flushOutgoing(now: number): void {
    for (const m of this.outgoing) {
      if (m.state === "failed" || m.state === "accepted" || !m.frame) continue;
      if (!m.wired) {
        if (now - m.ts > RESTAMP_AFTER_MS) {
          // Too old for the server's freshness check: sign it again with a new ts.
          m.frame = undefined;
          if (m.ref) this.byRef.delete(m.ref);
          m.ts = now;
          const key = m.kind === "dm"
            ? (this.directory.get(m.to) ?? this.contacts.get(m.to))?.pubkey
            : this.channel?.creatorPub;
          if (key) this.run(this.buildTask(m, key), false, false);
          else {
            m.error = "no key to encrypt it to any more";
            this.setState(m, "failed");
          }
          continue;
        }
        this.wire(m, now);
      } else if (m.state === "sent" && now - m.ts <= RESEND_WINDOW_MS) {
        // It left on a connection that dropped: if the server took it, its seen cache drops this copy, and
        // receivers show a message once (firstSight).
        this.wire(m, now);
      }
    }
  }
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(n % 1048576 ? 1 : 0)} MiB`;
}
