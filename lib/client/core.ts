/**
 * The client core: everything a SOCP client knows of the protocol, with no sockets, no timers and no clock of its
 * own (sans-IO, like the server's reducer). Its inputs are the frames that arrive (text), the results of the
 * crypto operations it asked for, the time, and the user's actions; its outputs ({@linkcode Output}) are frames
 * to send, crypto requests and events. The Deno/browser shell ({@linkcode SocpClient}) runs the socket, the
 * timers and WebCrypto around it; tests drive it with frame sequences.
 *
 * What it does: the connection policy (connection.ts: when to open a socket, reconnect with backoff, give an
 * attempt up, and the one next deadline the shell arms a timer for: no polling), hello acceptance in every
 * deployed form (PROFILE §15), pacing every frame under the limits the server announces (pacing.ts), the
 * directory of users and keys (names told apart by fingerprint), contacts with their pinned keys and the trust
 * rules of PROFILE §16 (trust.ts: key changes block sending until accepted, self-certifying ids, the verified
 * mark and safety code, our server's key and the channel's creator key pinned, a dedupe of delivered messages
 * the shell persists), DMs and the public channel (signed, end-to-end encrypted; what is written while offline
 * waits for the connection, or for the channel key, and goes out once), files sent chunk by chunk as the pacer
 * allows and files received, ACKs and ERRORs matched to our messages and files (by `msg_ref` and `file_id`,
 * the prose only for servers that send neither), the state of each message we send (sending, sent, accepted,
 * failed), and resending what was not accepted after a reconnect. This class composes the parts, each a module
 * over one shared state (core_state.ts): connection.ts, frames.ts (hello, routing, ACK and ERROR),
 * directory.ts, inbox.ts (DMs and the public channel), outgoing.ts (our messages and their states), pacing.ts,
 * file_send.ts and file_receive.ts.
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
 * core.start(Date.now()); // an `open` output: the shell opens a socket, then says so
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
import { closed, frame, nextDeadline, opened, retryNow, start, stop, tick } from "./connection.ts";
import { type CoreOptions, CoreState } from "./core_state.ts";
import { addContacts, list, resolve } from "./directory.ts";
import { acceptFile, declineFile } from "./file_receive.ts";
import { fileProblem, startFile } from "./file_send.ts";
import { trustServerKey } from "./frames.ts";
import { awaitChannel, build, newOutgoing, view } from "./outgoing.ts";
import type { ServerLimits } from "./pacing.ts";
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
export { TAKEN_OVER_CLOSE } from "./connection.ts";
export { ASSUMED_LIMITS, type ServerLimits } from "./pacing.ts";
export { formatFingerprint } from "./directory.ts";
export { KeyChangedError, keyFingerprint, MAX_SEEN, safetyCode, seenKey } from "./trust.ts";
export { messageText, plainTextOf } from "./inbox.ts";

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

  // ---------------------------------------------------------------- inputs: connection (connection.ts)

  /** Be connected: an `open` output asks the shell for a socket now; drops and failed attempts are retried. */
  start(now: number): void {
    this.#s.now = now;
    start(this.#s);
  }

  /** Stop connecting (before closing the socket): no reconnect, no attempt deadline. */
  stop(): void {
    stop(this.#s);
  }

  /** While waiting to reconnect: try now (an `open` output). False when no reconnect was waiting. */
  retryNow(now: number): boolean {
    this.#s.now = now;
    return retryNow(this.#s);
  }

  /** The socket opened: say hello (signed, with `ts` and a fresh `nonce` from the shell). */
  opened(now: number, nonce: string): void {
    this.#s.now = now;
    opened(this.#s, nonce);
  }

  /** A text frame arrived. */
  frame(text: string, now: number): void {
    this.#s.now = now;
    frame(this.#s, text);
  }

  /**
   * Time passes: whatever is due is done (the 3 s hello rule, the snapshot wait, an attempt given up, a reconnect,
   * frames and file chunks the pacer held). Call it at {@linkcode nextDeadline}.
   */
  tick(now: number): void {
    this.#s.now = now;
    tick(this.#s);
  }

  /** When {@linkcode tick} has something to do next (ms since the epoch; undefined: nothing planned). */
  nextDeadline(): number | undefined {
    return nextDeadline(this.#s);
  }

  /**
   * The socket closed, or could not open (`why` says it in words for the `reconnecting` event). Incoming
   * transfers are lost; our messages not accepted are sent again on reconnect.
   */
  closed(now: number, code: number, reason: string, why?: string): void {
    this.#s.now = now;
    closed(this.#s, code, reason, why ?? `connection closed (${code}${reason ? ": " + reason : ""})`);
  }

  /** The server's limits (announced in its hello ACK; PROFILE §11's defaults until then or without). */
  get limits(): ServerLimits {
    return { ...this.#s.limits };
  }

  /** Send a frame built by the shell (raw), through the pacer. */
  sendFrame(text: string, now: number): void {
    this.#s.now = now;
    this.#s.send(text);
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

  /**
   * Send to the public channel (encrypted to the channel key, signed). Written before the connection is ready (before
   * the first one, say), the message waits for the channel key, then goes out once; while connected and ready
   * without a key (a server that sends none) it throws.
   */
  all(text: string, now: number): { message: OutgoingMessage; ticket: number } {
    this.#s.now = now;
    const ch = this.#s.channel;
    if (!ch && this.#s.ready) {
      // Connected and still no key: this server may never send one (it is not in the acceptance sequence).
      throw new Error("the public channel key has not arrived yet; try again in a moment");
    }
    const m = newOutgoing(this.#s, "public", "public", "everyone", text, now, false);
    return { message: view(m), ticket: ch ? build(this.#s, m, ch.creatorPub) : awaitChannel(this.#s, m) };
  }

  /**
   * Send a file to a user or ("public") to everyone: checks the size (ours and the server's limit) and the
   * recipient (throws), then signs and sends FILE_START, the chunks (paced under the server's rate, sized to its
   * frame limit) and FILE_END. The ticket settles once FILE_END left, or with why the transfer stopped.
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
}
