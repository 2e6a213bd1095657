/**
 * The client core: everything a SOCP client knows of the protocol, with no sockets, no timers and no clock of its
 * own (sans-IO, like the server's reducer). Its inputs are the frames that arrive (text), the results of the
 * crypto operations it asked for, the time, and the user's actions; its outputs ({@linkcode Output}) are frames
 * to send, crypto requests and events. The Deno/browser shell ({@linkcode SocpClient}) runs the socket, the
 * timers and WebCrypto around it; tests drive it with frame sequences.
 *
 * What it does: hello acceptance in every deployed form (PROFILE §15), the directory of users and keys (names
 * told apart by fingerprint), contacts with their pinned keys and the trust rules of PROFILE §16 (trust.ts: key
 * changes block sending until accepted, self-certifying ids, the verified mark and safety code, our server's key
 * and the channel's creator key pinned, a dedupe of delivered messages the shell persists), DMs and the public
 * channel (signed, end-to-end encrypted), file
 * reassembly and the receiver's refusal notice, ACKs and the state of each message we send (sending, sent,
 * accepted, failed), and resending what was not accepted after a reconnect. This class composes the parts, each
 * a module over one shared state (core_state.ts): frames.ts (hello, routing, ACK and ERROR), directory.ts,
 * inbox.ts (DMs and the public channel), outgoing.ts (our messages and their states), file_send.ts and
 * file_receive.ts.
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
import { serializeEnvelope } from "../protocol/envelope.ts";
import type { PayloadOf } from "../protocol/messages.ts";
import { SOFTWARE } from "../version.ts";
import {
  type CoreOptions,
  CoreState,
  HELLO_SILENCE_MS,
  isObject,
  MAX_FRAME_CHARS,
  SNAPSHOT_WAIT_MS,
  type Task,
} from "./core_state.ts";
import { addContacts, list, resolve } from "./directory.ts";
import { acceptFile, declineFile, emitFile } from "./file_receive.ts";
import { failFile, fileChunk, fileEnd, fileProblem, startFile } from "./file_send.ts";
import { accepted, acceptHello, handleText, refuse, trustServerKey, unsignedHello } from "./frames.ts";
import { becomeReady, build, newOutgoing, view } from "./outgoing.ts";
import { keyFingerprint, loadSeen, sendKey, setVerified, trustInfo, trustKey } from "./trust.ts";
import type { Contact, CryptoResult, OutgoingMessage, Output, Peer, ServerPin, TrustInfo } from "./types.ts";

export type * from "./types.ts";

export {
  type CoreOptions,
  FILE_CHUNK_BYTES,
  HELLO_SILENCE_MS,
  RESEND_WINDOW_MS,
  RESTAMP_AFTER_MS,
  SNAPSHOT_WAIT_MS,
} from "./core_state.ts";
export { formatFingerprint } from "./directory.ts";
export { KeyChangedError, keyFingerprint, MAX_SEEN, safetyCode, seenKey } from "./trust.ts";
export { messageText, plainTextOf } from "./inbox.ts";

/**
 * The close code a server uses when a newer session of the same identity took over this one (PROFILE §16); the
 * client does not reconnect after it (that would take the session back, and so on).
 */
export const TAKEN_OVER_CLOSE = 4001;

/** The client core (see the module documentation). */
export class ClientCore {
  readonly #s: CoreState;
  /** Our user id. */
  readonly userId: string;
  /** Our public key (base64url SPKI). */
  readonly publicKey: string;
  /** Our display name, when we gave one. */
  readonly displayName?: string;
  /** Online users by id (including ourselves). */
  readonly directory: Map<string, Peer>;
  /** Everyone we know (seen online now or in an earlier session), by id. */
  readonly contacts: Map<string, Contact>;

  /** The server's id, once known ("" before). */
  get serverId(): string {
    return this.#s.serverId;
  }
  set serverId(v: string) {
    this.#s.serverId = v;
  }
  /** The server's public key, once its hello reply gave it ("" before). */
  get serverPub(): string {
    return this.#s.serverPub;
  }
  set serverPub(v: string) {
    this.#s.serverPub = v;
  }
  /** Our frames are signed in the spaced form: the server verified only in that form (PROFILE §15). */
  get signSpaced(): boolean {
    return this.#s.signSpaced;
  }
  /** The connection's phase. */
  get phase(): "offline" | "hello" | "online" | "refused" {
    return this.#s.phase;
  }
  set phase(v: "offline" | "hello" | "online" | "refused") {
    this.#s.phase = v;
  }
  /** True once the hello was accepted and the snapshot arrived (or did not within 1.5 s). */
  get ready(): boolean {
    return this.#s.ready;
  }
  set ready(v: boolean) {
    this.#s.ready = v;
  }
  /** The public channel, once a key share gave us its key. */
  get channel(): { creatorPub: string } | null {
    return this.#s.channel;
  }
  set channel(v: { creatorPub: string } | null) {
    this.#s.channel = v;
  }

  /** A core for one user; nothing happens until the shell feeds it events. */
  constructor(opts: CoreOptions) {
    this.#s = new CoreState(opts);
    this.userId = opts.userId;
    this.publicKey = opts.publicKey;
    this.displayName = opts.displayName;
    this.directory = this.#s.directory;
    this.contacts = this.#s.contacts;
    if (opts.seen) loadSeen(this.#s, opts.seen.entries, opts.seen.floor);
  }

  /** True while an inbound frame is being handled (waiting for crypto) or queued: the shell may hold new ones. */
  get inboundWaiting(): boolean {
    return this.#s.inboundBusy || this.#s.inbound.length > 0;
  }

  /** Take the outputs produced so far (in order). */
  drain(): Output[] {
    const o = this.#s.out;
    this.#s.out = [];
    return o;
  }

  // ---------------------------------------------------------------- inputs: connection

  /** The socket opened: say hello (signed, with `ts` and a fresh `nonce` from the shell). */
  opened(now: number, nonce: string): void {
    this.#s.now = now;
    this.#s.phase = "hello";
    this.#s.ready = false;
    this.#s.serverSigns = false;
    this.#s.helloChecking = false;
    this.#s.serverTrusted = false;
    this.#s.serverPendingPub = "";
    this.#s.helloAt = now;
    this.#s.inbound.length = 0;
    const payload: PayloadOf<"USER_HELLO"> = {
      client: SOFTWARE,
      pubkey: this.#s.publicKey,
      enc_pubkey: this.#s.publicKey,
      ts: now,
      nonce,
    };
    if (this.#s.displayName) payload.meta = { display_name: this.#s.displayName };
    const to = this.#s.serverId || "*";
    this.#s.run(
      function* (this: ClientCore): Task {
        const sig = (yield { op: "sign", data: this.#s.sigPreimage(payload) }) as string | null;
        if (this.#s.phase !== "hello") return;
        this.#s.emitSend({ type: "USER_HELLO", from: this.#s.userId, to, ts: now, payload, sig: sig ?? "" });
      }.call(this),
      false,
      false,
    );
  }

  /** A text frame arrived. */
  frame(text: string, now: number): void {
    this.#s.now = now;
    if (this.#s.phase === "offline" || this.#s.phase === "refused") return;
    if (text.length > MAX_FRAME_CHARS) {
      return this.#s.emit({
        kind: "warning",
        detail: `ignored a frame of ${text.length} characters from the server`,
      });
    }
    if (this.#s.phase === "hello" && !this.#s.helloChecking) {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        return this.#s.emit({ kind: "warning", detail: "unreadable frame from the server during the hello" });
      }
      if (!isObject(raw)) return;
      if (raw.type === "ERROR") {
        const p = isObject(raw.payload) ? raw.payload : {};
        return refuse(
          this.#s,
          typeof p.code === "string" ? p.code : "ERROR",
          typeof p.detail === "string" ? p.detail : typeof p.message === "string" ? p.message : "",
        );
      }
      this.#s.helloChecking = true;
      const rawObj = raw;
      this.#s.enqueue(() => acceptHello(this.#s, rawObj, text));
      return;
    }
    this.#s.enqueue(() => handleText(this.#s, text));
  }

  /** Time passes: the 3 s hello rule and the snapshot wait. Call it every few hundred milliseconds. */
  tick(now: number): void {
    this.#s.now = now;
    if (this.#s.phase === "hello" && !this.#s.helloChecking && now - this.#s.helloAt >= HELLO_SILENCE_MS) {
      unsignedHello(this.#s);
      accepted(this.#s, now);
      becomeReady(this.#s); // a server that says nothing sends no snapshot either
    }
    if (this.#s.phase === "online" && !this.#s.ready && now - this.#s.acceptedAt >= SNAPSHOT_WAIT_MS) {
      becomeReady(this.#s);
    }
  }

  /** The socket closed. Incoming transfers are lost; our messages not accepted are sent again on reconnect. */
  closed(now: number, code: number, reason: string): void {
    this.#s.now = now;
    const was = this.#s.phase;
    if (was === "offline") return;
    this.#s.phase = was === "refused" ? "refused" : "offline";
    this.#s.ready = false;
    this.#s.helloChecking = false;
    this.#s.inbound.length = 0;
    this.#s.directory.clear();
    for (const t of this.#s.incoming.values()) {
      emitFile(this.#s, t, null, "the connection was lost before the file was complete");
    }
    this.#s.incoming.clear();
    for (const f of this.#s.sendingFiles.values()) {
      if (f.state === "sending" || f.state === "ended") failFile(this.#s, f, "the connection was lost");
    }
    if (was === "refused") return;
    if (code === TAKEN_OVER_CLOSE) {
      // A newer session of this identity (signed with our key) took over: reconnecting would take it back.
      return refuse(
        this.#s,
        "TAKEN_OVER",
        "signed in elsewhere: a newer session of this identity took over this one" +
          (reason ? ` (${reason})` : ""),
      );
    }
    this.#s.emit({ kind: "closed", code, reason });
  }

  /** The result of the crypto operation `id`. */
  cryptoDone(id: number, result: CryptoResult, now: number): void {
    this.#s.now = now;
    const w = this.#s.waiting.get(id);
    if (!w) return;
    this.#s.waiting.delete(id);
    this.#s.step(w.task, result, w.inbound, w.ticket);
  }

  // ---------------------------------------------------------------- inputs: contacts and lookups

  /** Contacts the shell kept from earlier sessions. */
  addContacts(list: Iterable<Contact>): void {
    addContacts(this.#s, list);
  }

  /** `name`, or `name#abcd` when another known user has the same name (case-insensitive). */
  labelOf(userId: string): string {
    return this.#s.labelOf(userId);
  }

  /** The online users, sorted by display label then user id (PROFILE §6). */
  list(): Peer[] {
    return list(this.#s);
  }

  /**
   * Find a user by id, `name#abcd` label, or display name (case-insensitive): online users first, then contacts.
   * Throws with a message for the user when there is none or more than one.
   */
  resolve(target: string): Contact & { online: boolean; label: string } {
    return resolve(this.#s, target);
  }

  // ---------------------------------------------------------------- trust (PROFILE §16)

  /** What to show about a contact's key: trust state, fingerprints, safety code, a pending change. */
  trustInfo(target: string): TrustInfo {
    const who = resolve(this.#s, target);
    const info = trustInfo(this.#s, who.userId);
    if (!info) throw new Error(`no key of ${who.label} is known (its server does not advertise keys)`);
    return info;
  }

  /** Our key's fingerprint. */
  get fingerprint(): string {
    return keyFingerprint(this.#s.publicKey);
  }

  /**
   * Accept the changed key of a contact (after comparing the safety code): it becomes the pin and sending works
   * again. Refused for a contact marked verified (a hard stop): remove the mark first with
   * {@linkcode setVerified}.
   */
  trustKey(target: string): Contact {
    return trustKey(this.#s, resolve(this.#s, target).userId);
  }

  /** Mark a contact verified (the safety code matched) or remove the mark. */
  setVerified(target: string, verified: boolean): Contact {
    return setVerified(this.#s, resolve(this.#s, target).userId, verified);
  }

  /** Our server's pinned key (null before a server proved one). */
  get serverPin(): ServerPin | null {
    return this.#s.serverPin;
  }

  /** The key our server presents when it is not the pinned one ("" otherwise). */
  get serverKeyPending(): string {
    return this.#s.serverPendingPub;
  }

  /** Accept the key our server presents now in place of the pinned one. */
  trustServerKey(): ServerPin {
    return trustServerKey(this.#s);
  }

  /** Messages of ours still tracked (most recent last). */
  messages(): OutgoingMessage[] {
    return this.#s.outgoing.map((m) => view(m));
  }

  /** The state of one of our messages. */
  message(id: string): OutgoingMessage | undefined {
    const m = this.#s.outgoing.find((o) => o.id === id);
    return m && view(m);
  }

  // ---------------------------------------------------------------- inputs: the user's actions

  /**
   * Send an end-to-end encrypted, signed DM (PROFILE §4, §15) to the key pinned for the user. Returns the message
   * (state "sending"; events follow as it changes) and the ticket settled once it is built. Throws when the user is
   * unknown or has no key, and {@linkcode KeyChangedError} while their key changed and the user did not accept
   * the new one (nothing is encrypted then).
   */
  tell(target: string, text: string, now: number): { message: OutgoingMessage; ticket: number } {
    this.#s.now = now;
    const peer = resolve(this.#s, target);
    const key = sendKey(this.#s, peer.userId); // the pinned key; throws KeyChangedError while a change waits
    const m = newOutgoing(this.#s, "dm", peer.userId, peer.label, text, now, !peer.online);
    return { message: view(m), ticket: build(this.#s, m, key) };
  }

  /** Send to the public channel (encrypted to the channel key, signed). Throws before the channel key arrived. */
  all(text: string, now: number): { message: OutgoingMessage; ticket: number } {
    this.#s.now = now;
    if (!this.#s.channel) {
      throw new Error("the public channel key has not arrived yet; try again in a moment");
    }
    const m = newOutgoing(this.#s, "public", "public", "everyone", text, now, false);
    return { message: view(m), ticket: build(this.#s, m, this.#s.channel.creatorPub) };
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
    this.#s.now = now;
    return startFile(this.#s, { target, name, data, fileId });
  }

  /** Encrypt and send chunk `index` of a file started with {@linkcode startFile}. */
  fileChunk(fileId: string, index: number, now: number): number {
    return fileChunk(this.#s, fileId, index, now);
  }

  /** Send FILE_END; the server ACKs it once the whole file is relayed (state "accepted"). */
  fileEnd(fileId: string, now: number): number {
    return fileEnd(this.#s, fileId, now);
  }

  /** Why a transfer of ours stopped (refused, connection lost), or undefined while it goes on. */
  fileProblem(fileId: string): string | undefined {
    return fileProblem(this.#s, fileId);
  }

  /** Accept the offered file `fileId` from `from` (with `holdFiles`): decrypt it. False when no such offer. */
  acceptFile(from: string, fileId: string, now: number): boolean {
    this.#s.now = now;
    return acceptFile(this.#s, from, fileId);
  }

  /** Decline the offered file `fileId` from `from` (with `holdFiles`): drop it; a DM's sender is told. */
  declineFile(from: string, fileId: string, now: number): void {
    this.#s.now = now;
    this.#s.run(declineFile(this.#s, from, fileId), false, false);
  }

  /** A CTRL_CLOSE frame to say goodbye. */
  goodbye(now: number): string {
    return serializeEnvelope({
      type: "CTRL_CLOSE",
      from: this.#s.userId,
      to: this.#s.serverId,
      ts: now,
      payload: {},
    });
  }

  // ---------------------------------------------------------------- the task runner

  // ---------------------------------------------------------------- outputs

  // ---------------------------------------------------------------- hello

  // ---------------------------------------------------------------- frames

  // ---------------------------------------------------------------- files we receive

  // ---------------------------------------------------------------- what the server tells us about ours

  // ---------------------------------------------------------------- messages we send
}
