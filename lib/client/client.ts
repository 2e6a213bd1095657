/**
 * The client's program interface: {@linkcode SocpClient} around the sans-IO {@linkcode ClientCore}, with a
 * WebSocket shell (link.ts: one timer for the core's next deadline, no polling) and an injectable crypto runner
 * ({@linkcode WebCryptoRunner} by default). It runs unchanged in Deno and in a browser (no `node:` import, no
 * `Deno.*`): key files, downloads and contacts on disk live in separate Deno-only modules; the web app keeps them
 * in IndexedDB.
 *
 * The core owns the protocol policy: reconnecting with backoff (1 s doubling to 30 s) after a drop or a failed
 * attempt, sending again what the server had not accepted, pacing under the limits the server announces, and
 * keeping what is written while offline until a connection takes it. The hello is accepted in every deployed form
 * (PROFILE §15).
 *
 * @example
 * ```ts
 * import { generateKeyPair } from "../crypto/rsa.ts";
 *
 * const key = await generateKeyPair();
 * const userId = crypto.randomUUID();
 * const c = await SocpClient.connect("ws://localhost:8765", { userId, key, displayName: "alice" });
 * c.onEvent = (e) => { if (e.kind === "dm") console.log(e.fromLabel, e.text); };
 * await c.tell("bob", "hi");
 * ```
 *
 * @example Offline first, with its own crypto runner
 * ```ts
 * import { generateKeyPair } from "../crypto/rsa.ts";
 *
 * const key = await generateKeyPair();
 * const bob = { userId: crypto.randomUUID(), name: "bob", pubkey: key.publicKey, fingerprint: "", serverId: "" };
 * const runner = new WebCryptoRunner(key, { decrypt: (k, ct) => k.decrypt(ct) }); // e.g. in Web Workers
 * const c = await SocpClient.create("ws://localhost:8765", { userId: crypto.randomUUID(), key, crypto: runner, contacts: [bob] });
 * await c.tell(bob.userId, "written offline"); // state "sending": kept by the core
 * c.start(); // connects (retrying with backoff); the DM goes out once the hello is accepted
 * await c.whenReady();
 * ```
 * @module
 */
import type { PrivateKey } from "../crypto/rsa.ts";
import { signingPreimage } from "../protocol/canonical_json.ts";
import { type Envelope, serializeEnvelope } from "../protocol/envelope.ts";
import type { MessageType, PayloadOf } from "../protocol/messages.ts";
import { ClientCore } from "./core.ts";
import { Link, randomUuid } from "./link.ts";
import { type ConnectOptions, FileStopped, HelloRefused } from "./options.ts";
import { type StoredTrust, StoreWriter } from "./store.ts";
import type { ClientEvent, Contact, OutgoingMessage, Peer, ServerPin } from "./types.ts";
import { WebCryptoRunner } from "./webcrypto.ts";

export type {
  ClientEvent,
  Contact,
  CryptoRunner,
  OutgoingMessage,
  Peer,
  ServerPin,
  TrustInfo,
} from "./types.ts";
export { ClientCore, KeyChangedError, keyFingerprint, safetyCode } from "./core.ts";
export { MemoryTrustStore, type StoredTrust, type TrustStore } from "./store.ts";
export { type WebCryptoOptions, WebCryptoRunner } from "./webcrypto.ts";
export { randomUuid } from "./link.ts";
export { type ConnectOptions, FileStopped, HelloRefused } from "./options.ts";

/** A connected (or, before `start`, offline) SOCP user. */
export class SocpClient {
  /** The sans-IO core (directory, contacts, message states, connection policy). */
  readonly core: ClientCore;
  /** Called for every event; set by the program. Events before it is set are buffered. */
  onEvent?: (e: ClientEvent) => void;
  private readonly buffered: ClientEvent[] = [];
  private readonly link: Link;
  private stopped = false;
  private firstReady?: { resolve: () => void; reject: (e: Error) => void };
  /** Waiting for the next `ready` (see {@linkcode SocpClient.whenReady}). */
  private readonly readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  /** `onProgress` of the files being sent, by file id. */
  private readonly progress = new Map<string, (sent: number, size: number) => void>();
  /** Writes what the trust rules keep (contacts, pins, messages seen) to the store. */
  private readonly saver: StoreWriter;

  private constructor(
    readonly url: string,
    readonly userId: string,
    private readonly key: PrivateKey,
    readonly displayName: string | undefined,
    opts: ConnectOptions,
    stored: StoredTrust | undefined,
  ) {
    const runner = opts.crypto ?? new WebCryptoRunner(key, { onChannelKey: opts.onChannelKey });
    this.saver = new StoreWriter(url, opts.store, (e) => this.deliver(e));
    this.core = new ClientCore({
      userId,
      publicKey: key.publicKey,
      displayName,
      serverId: opts.serverId,
      maxFileBytes: opts.maxFileBytes,
      holdFiles: opts.holdFiles,
      serverPin: stored?.serverPin,
      seen: stored ? { entries: stored.seen, floor: stored.seenFloor } : undefined,
      reconnect: opts.reconnect,
      backoffMs: opts.backoffMs,
      maxBackoffMs: opts.maxBackoffMs,
      connectTimeoutMs: opts.timeoutMs,
    });
    if (stored) this.core.addContacts(stored.contacts);
    if (opts.contacts) this.core.addContacts(opts.contacts);
    this.link = new Link(url, this.core, runner, {
      event: (e) => this.onCoreEvent(e),
      lost: (why) => this.lost(why),
    });
  }

  /**
   * A client that exists offline: the store is loaded, nothing is connected until {@linkcode start}. Messages
   * written before (to contacts, or to the public channel) wait in the core and go out once, when a connection
   * takes them; its first failures are retried with backoff like any drop.
   */
  static async create(url: string, opts: ConnectOptions): Promise<SocpClient> {
    const stored = opts.store ? await opts.store.load(url) : undefined;
    return new SocpClient(url, opts.userId, opts.key, opts.displayName, opts, stored);
  }

  /**
   * Create, start and wait for the first hello to be accepted (and the snapshot of who is online); rejects with
   * {@linkcode HelloRefused}, or an error when the first attempt fails or gets no answer within `timeoutMs`.
   * Later drops are reconnected.
   */
  static async connect(url: string, opts: ConnectOptions): Promise<SocpClient> {
    const c = await SocpClient.create(url, opts);
    const first = new Promise<SocpClient>((resolve, reject) => {
      c.firstReady = { resolve: () => resolve(c), reject: (e) => (c.shutdown(), reject(e)) };
    });
    c.start();
    return await first;
  }

  /** Connect (again after a refusal, or after `close`: the user asked); no-op while connected or connecting. */
  start(): void {
    this.stopped = false;
    this.link.resume();
    this.core.start(Date.now());
    this.link.pump();
  }

  /** Resolves at the next `ready` (at once when connected and ready); rejects when the hello is refused. */
  whenReady(): Promise<void> {
    if (this.connected && this.core.ready) return Promise.resolve();
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /** Online users by id (including ourselves). */
  get directory(): Map<string, Peer> {
    return this.core.directory;
  }
  /** Everyone known (online now or seen in an earlier session), by id. */
  get known(): Map<string, Contact> {
    return this.core.contacts;
  }
  /** The id of the server we are connected to ("" before its hello reply). */
  get serverId(): string {
    return this.core.serverId;
  }
  /** The server's public key as its hello reply gave it ("" before). */
  get serverPub(): string {
    return this.core.serverPub;
  }
  /** True while the server has accepted our hello on a live connection. */
  get connected(): boolean {
    return this.core.phase === "online" && this.link.open;
  }
  /** True once the public channel key arrived. */
  get hasChannel(): boolean {
    return this.core.channel !== null;
  }

  /** Events that arrived before `onEvent` was set. */
  drainBuffered(): ClientEvent[] {
    return this.buffered.splice(0);
  }

  /** The contacts to persist (id, name, key, last server). */
  contacts(): Contact[] {
    return [...this.core.contacts.values()];
  }

  /** Find a user by id, label or display name (online first, then contacts); throws a message for the user. */
  resolve(target: string): Contact & { online: boolean; label: string } {
    return this.core.resolve(target);
  }

  /** True when `userId` is online now. */
  isOnline(userId: string): boolean {
    return this.core.directory.has(userId);
  }

  /** The online users, sorted by display name then user id. */
  list(): Peer[] {
    return this.core.list();
  }

  /** Messages of ours and their states. */
  messages(): OutgoingMessage[] {
    return this.core.messages();
  }

  /**
   * Send an end-to-end encrypted, signed DM to a user (id, label or display name). Resolves once it is built and
   * either written to the connection (state "sent") or kept for the next one (state "sending", also before the
   * first connection); `message` events follow each change (accepted, failed).
   */
  async tell(target: string, text: string): Promise<OutgoingMessage> {
    const { message, ticket } = this.core.tell(target, text, Date.now());
    await this.link.settled(ticket);
    return this.core.message(message.id) ?? message;
  }

  /**
   * Send a message to the public channel (encrypted under the channel key, signed by us). Before the channel key
   * arrived it waits for it (state "sending").
   */
  async all(text: string): Promise<OutgoingMessage> {
    const { message, ticket } = this.core.all(text, Date.now());
    await this.link.settled(ticket);
    return this.core.message(message.id) ?? message;
  }

  /**
   * Send a file to a user or, with `target` "public", to everyone. The size is checked before anything is sent;
   * the core sizes the chunks to the server's frame limit and paces them under its rate; the first refusal stops
   * the transfer (rejects with {@linkcode FileStopped}, after a single `fileRefused` event). Resolves with the
   * file id once FILE_END is sent; the server ACKs it (an `ack` event with the `fileId`) when the whole file is
   * relayed.
   */
  async sendFile(
    target: string,
    name: string,
    data: Uint8Array,
    onProgress?: (sent: number, size: number) => void,
  ): Promise<string> {
    const fileId = randomUuid();
    const start = this.core.startFile(target, name, data, Date.now(), fileId);
    if (onProgress) this.progress.set(fileId, onProgress);
    try {
      await this.link.settled(start.ticket);
    } catch (e) {
      const p = this.core.fileProblem(fileId);
      throw p ? new FileStopped(fileId, p) : e;
    } finally {
      this.progress.delete(fileId);
    }
    return fileId;
  }

  /** Accept an offered file (with `holdFiles`): it is decrypted and reported like any other. */
  acceptFile(from: string, fileId: string): boolean {
    const ok = this.core.acceptFile(from, fileId, Date.now());
    this.link.pump();
    return ok;
  }

  /** Decline an offered file (with `holdFiles`): it is dropped undecrypted; a DM's sender is told. */
  declineFile(from: string, fileId: string): void {
    this.core.declineFile(from, fileId, Date.now());
    this.link.pump();
  }

  /** While waiting to reconnect after a drop: try now instead of at the end of the wait. */
  retryNow(): void {
    if (this.stopped) return;
    this.core.retryNow(Date.now());
    this.link.pump();
  }

  /** Send a raw frame from this user (optionally signed with the user's key over the canonical payload). */
  async send<T extends MessageType>(
    type: T,
    to: string,
    payload: PayloadOf<T>,
    sign = false,
    ts = Date.now(),
  ): Promise<Envelope<T>> {
    const env: Envelope<T> = { type, from: this.userId, to, ts, payload };
    if (sign) env.sig = await this.key.sign(signingPreimage(payload, this.core.signSpaced));
    if (!this.link.open) throw new Error("not connected");
    this.core.sendFrame(serializeEnvelope(env), Date.now());
    this.link.pump();
    return env;
  }

  /**
   * Stop: say CTRL_CLOSE and close the socket, no reconnect. Resolves once the close handshake is done (so every
   * frame sent before has left), or after `timeoutMs`.
   */
  close(timeoutMs = 3000): Promise<void> {
    this.stopped = true;
    this.core.stop();
    const ws = this.link.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) {
      this.link.end();
      return this.flushStore();
    }
    let grace: ReturnType<typeof setTimeout> | undefined;
    const done = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      ws.addEventListener("close", () => (clearTimeout(t), clearTimeout(grace), resolve()));
    });
    try {
      if (ws.readyState === WebSocket.OPEN) {
        // A server closes the connection when it reaches our CTRL_CLOSE, so everything sent before it has been
        // handled (a server may drop frames still in its hands when the client closes first). One that does
        // not close is closed by us after a short grace.
        this.link.writeNow(this.core.goodbye(Date.now()));
        grace = setTimeout(() => {
          try {
            ws.close(1000);
          } catch { /* closing */ }
        }, Math.min(1500, timeoutMs / 2));
      } else ws.close(1000);
    } catch { /* already closing */ }
    return done.then(() => (this.link.end(), this.flushStore()));
  }

  /** Accept the changed key of a contact (see {@linkcode ClientCore.trustKey}). */
  trustKey(target: string): Contact {
    const c = this.core.trustKey(target);
    this.link.pump();
    return c;
  }

  /** Mark a contact verified, or remove the mark (see {@linkcode ClientCore.setVerified}). */
  setVerified(target: string, verified: boolean): Contact {
    const c = this.core.setVerified(target, verified);
    this.link.pump();
    return c;
  }

  /** Accept our server's new key (see {@linkcode ClientCore.trustServerKey}). */
  trustServerKey(): ServerPin {
    const p = this.core.trustServerKey();
    this.link.pump();
    return p;
  }

  /** Resolves once every write to the store asked for so far is done. */
  flushStore(): Promise<void> {
    return this.saver.flush();
  }

  // ---------------------------------------------------------------- IO

  /** Stop reconnecting and the timer, and close the socket. */
  private shutdown(): void {
    this.stopped = true;
    this.core.stop();
    this.link.end();
    try {
      this.link.ws?.close();
    } catch { /* ignore */ }
  }

  /** A socket closed or could not open: the first `connect` fails (no reconnect then). */
  private lost(why: string): void {
    if (!this.firstReady) return;
    const f = this.firstReady;
    this.firstReady = undefined;
    this.core.stop();
    f.reject(new Error(why));
  }

  /** Hand an event to `onEvent`, or keep it until a handler is set. */
  private deliver(e: ClientEvent): void {
    if (this.onEvent) this.onEvent(e);
    else this.buffered.push(e);
  }

  /** React to the core's events (first ready, refusals, what to store, file progress), then deliver them. */
  private onCoreEvent(e: ClientEvent): void {
    this.saver.onEvent(e);
    if (e.kind === "fileSendProgress") this.progress.get(e.fileId)?.(e.sent, e.size);
    if (e.kind === "ready") {
      for (const w of this.readyWaiters.splice(0)) w.resolve();
      if (this.firstReady) {
        const f = this.firstReady;
        this.firstReady = undefined;
        f.resolve();
      }
    } else if (e.kind === "refused") {
      const err = new HelloRefused(e.code, e.detail);
      for (const w of this.readyWaiters.splice(0)) w.reject(err);
      if (this.firstReady) {
        const f = this.firstReady;
        this.firstReady = undefined;
        f.reject(err);
        return;
      }
      this.shutdown();
    }
    this.deliver(e);
  }
}
