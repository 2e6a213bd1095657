/**
 * The client's IO shell: a WebSocket, timers and WebCrypto around the sans-IO {@linkcode ClientCore}. It runs
 * unchanged in Deno and in a browser (no `node:` import, no `Deno.*`): key files, downloads and contacts on disk
 * live in separate Deno-only modules; the web app keeps them in IndexedDB.
 *
 * It reconnects with backoff (1 s doubling to 30 s) after a drop, and the core sends again what the server had
 * not accepted; the hello is accepted in every deployed form (PROFILE §15).
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
 * @module
 */
import type { PrivateKey } from "../crypto/rsa.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import { signingPreimage } from "../protocol/canonical_json.ts";
import { type Envelope, serializeEnvelope, withFrameId } from "../protocol/envelope.ts";
import type { MessageType, PayloadOf } from "../protocol/messages.ts";
import { ClientCore } from "./core.ts";
import type { StoredTrust, TrustStore } from "./store.ts";
import type { ClientEvent, Contact, CryptoResult, OutgoingMessage, Peer, ServerPin } from "./types.ts";
import { WebCryptoRunner } from "./webcrypto.ts";

export type { ClientEvent, Contact, OutgoingMessage, Peer, ServerPin, TrustInfo } from "./types.ts";
export { ClientCore, KeyChangedError, keyFingerprint, safetyCode } from "./core.ts";
export { MemoryTrustStore, type StoredTrust, type TrustStore } from "./store.ts";
export { WebCryptoRunner } from "./webcrypto.ts";

/** Options for {@linkcode SocpClient.connect}. */
export interface ConnectOptions {
  /** The user id (a UUID) this client speaks for. */
  userId: string;
  /** The user's RSA key: signs frames and decrypts what is sent to the user. */
  key: PrivateKey;
  /** Name shown to others in presence (default: the user id). */
  displayName?: string;
  /** Milliseconds to wait for the first connection's hello to be accepted (default 10 s). */
  timeoutMs?: number;
  /** Reconnect after a drop (default true). */
  reconnect?: boolean;
  /** Contacts kept from earlier sessions (so DMs reach known offline users). */
  contacts?: Contact[];
  /** The server id when known (the USER_HELLO's `to`; else "*" until the server says it). */
  serverId?: string;
  /** Largest file to send or accept (default 16 MiB). */
  maxFileBytes?: number;
  /** First reconnect delay (default 1000 ms; doubles up to `maxBackoffMs`). */
  backoffMs?: number;
  /** Longest reconnect delay (default 30 s). */
  maxBackoffMs?: number;
  /** Incoming files are offers, decrypted only after {@linkcode SocpClient.acceptFile} (default false). */
  holdFiles?: boolean;
  /** Called with the public channel's key when a key share opened it (a browser moves its decryptions to workers). */
  onChannelKey?: (key: PrivateKey) => void;
  /**
   * Where pins, marks, the server's key and the messages already shown are kept across restarts (PROFILE §16):
   * loaded before connecting, written as they change. Without one they live as long as the client.
   */
  store?: TrustStore;
}

/** Thrown when the server refuses the hello. */
export class HelloRefused extends Error {
  /** `code` is the server's error code; `detail` its explanation. */
  constructor(readonly code: string, detail: string) {
    super(`${code}: ${detail}`);
    this.name = "HelloRefused";
  }
}

/** Thrown by {@linkcode SocpClient.sendFile} when the transfer was stopped (already reported by a `fileRefused` event). */
export class FileStopped extends Error {
  /** `fileId` names the stopped transfer; `reason` says why it stopped. */
  constructor(readonly fileId: string, reason: string) {
    super(reason);
    this.name = "FileStopped";
  }
}

const TICK_MS = 250;

/**
 * A random UUID v4 for an envelope `id` (PROFILE §15). `crypto.randomUUID` exists only in secure contexts; a page
 * served over plain http from another host still has `crypto.getRandomValues`.
 */
export function randomUuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Write one frame's text with a fresh envelope `id` (PROFILE §15: some servers refuse frames without one). */
function put(ws: WebSocket, text: string): void {
  ws.send(withFrameId(text, randomUuid()));
}

/** A connected SOCP user. */
export class SocpClient {
  /** The sans-IO core (directory, contacts, message states). */
  readonly core: ClientCore;
  /** Called for every event; set by the program. Events before it is set are buffered. */
  onEvent?: (e: ClientEvent) => void;
  private readonly buffered: ClientEvent[] = [];
  private ws: WebSocket | null = null;
  private readonly cryptoRunner: WebCryptoRunner;
  private readonly tickets = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private tickTimer: ReturnType<typeof setInterval> | undefined;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private attempt = 0;
  private stopped = false;
  private firstReady?: { resolve: () => void; reject: (e: Error) => void };
  private readonly reconnect: boolean;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;

  private readonly store?: TrustStore;
  /** The store's writes not finished yet (close() waits for them). */
  private readonly storing = new Set<Promise<void>>();

  private constructor(
    readonly url: string,
    readonly userId: string,
    private readonly key: PrivateKey,
    readonly displayName: string | undefined,
    opts: ConnectOptions,
    stored: StoredTrust | undefined,
  ) {
    this.cryptoRunner = new WebCryptoRunner(key, opts.onChannelKey);
    this.store = opts.store;
    this.core = new ClientCore({
      userId,
      publicKey: key.publicKey,
      displayName,
      serverId: opts.serverId,
      maxFileBytes: opts.maxFileBytes,
      holdFiles: opts.holdFiles,
      serverPin: stored?.serverPin,
      seen: stored ? { entries: stored.seen, floor: stored.seenFloor } : undefined,
    });
    if (stored) this.core.addContacts(stored.contacts);
    if (opts.contacts) this.core.addContacts(opts.contacts);
    this.reconnect = opts.reconnect ?? true;
    this.backoffMs = opts.backoffMs ?? 1000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
  }

  /**
   * Connect and say hello; resolves once the server accepted it (and its snapshot of who is online arrived),
   * rejects with {@linkcode HelloRefused} or a connection error. Later drops are reconnected.
   */
  static async connect(url: string, opts: ConnectOptions): Promise<SocpClient> {
    const stored = opts.store ? await opts.store.load(url) : undefined;
    const c = new SocpClient(url, opts.userId, opts.key, opts.displayName, opts, stored);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        c.firstReady = undefined;
        c.shutdown();
        reject(new Error(`no answer from ${url} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      c.firstReady = {
        resolve: () => (clearTimeout(timer), resolve(c)),
        reject: (e) => (clearTimeout(timer), c.shutdown(), reject(e)),
      };
      c.open();
    });
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
    return this.core.phase === "online" && this.ws?.readyState === WebSocket.OPEN;
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
   * either written to the connection (state "sent") or kept for the next one (state "sending"); `message`
   * events follow each change (accepted, failed).
   */
  async tell(target: string, text: string): Promise<OutgoingMessage> {
    const { message, ticket } = this.core.tell(target, text, Date.now());
    this.pump();
    await this.settled(ticket);
    return this.core.message(message.id) ?? message;
  }

  /** Send a message to the public channel (encrypted under the channel key, signed by us). */
  async all(text: string): Promise<OutgoingMessage> {
    const { message, ticket } = this.core.all(text, Date.now());
    this.pump();
    await this.settled(ticket);
    return this.core.message(message.id) ?? message;
  }

  /**
   * Send a file to a user or, with `target` "public", to everyone. The size is checked before anything is sent;
   * chunks (7,136 bytes, PROFILE §9) are paced under the server's rate limit; the first refusal stops the
   * transfer (rejects with {@linkcode FileStopped}, after a single `fileRefused` event). Resolves with the file
   * id once FILE_END is sent; the server ACKs it when the whole file is relayed.
   */
  async sendFile(
    target: string,
    name: string,
    data: Uint8Array,
    onProgress?: (sent: number, size: number) => void,
  ): Promise<string> {
    const fileId = crypto.randomUUID();
    const start = this.core.startFile(target, name, data, Date.now(), fileId);
    this.pump();
    const stopped = () => {
      const p = this.core.fileProblem(fileId);
      return p ? new FileStopped(fileId, p) : null;
    };
    const guard = async (ticket: number) => {
      try {
        await this.settled(ticket);
      } catch (e) {
        throw stopped() ?? e;
      }
    };
    await guard(start.ticket);
    let tokens = 200;
    let last = Date.now();
    for (let i = 0; i < start.chunks; i++) {
      const s = stopped();
      if (s) throw s;
      // Stay under the server's token bucket (100 frames/s, burst 400) with room for other traffic.
      const now = Date.now();
      tokens = Math.min(200, tokens + ((now - last) * 80) / 1000);
      last = now;
      if (tokens < 1) {
        await new Promise((r) => setTimeout(r, Math.ceil(((1 - tokens) * 1000) / 80)));
        tokens = 1;
        last = Date.now();
      }
      tokens -= 1;
      await guard(this.core.fileChunk(fileId, i, Date.now()));
      onProgress?.(Math.min((i + 1) * 7136, data.length), data.length);
    }
    const s = stopped();
    if (s) throw s;
    await guard(this.core.fileEnd(fileId, Date.now()));
    return fileId;
  }

  /** Accept an offered file (with `holdFiles`): it is decrypted and reported like any other. */
  acceptFile(from: string, fileId: string): boolean {
    const ok = this.core.acceptFile(from, fileId, Date.now());
    this.pump();
    return ok;
  }

  /** Decline an offered file (with `holdFiles`): it is dropped undecrypted; a DM's sender is told. */
  declineFile(from: string, fileId: string): void {
    this.core.declineFile(from, fileId, Date.now());
    this.pump();
  }

  /** While waiting to reconnect after a drop: try now instead of at the end of the wait. */
  retryNow(): void {
    if (this.stopped || this.ws || this.core.phase === "refused" || this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.open();
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
    if (this.ws?.readyState !== WebSocket.OPEN) throw new Error("not connected");
    put(this.ws, serializeEnvelope(env));
    return env;
  }

  /**
   * Stop: say CTRL_CLOSE and close the socket, no reconnect. Resolves once the close handshake is done (so every
   * frame sent before has left), or after `timeoutMs`.
   */
  close(timeoutMs = 3000): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return this.flushStore();
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
        put(ws, this.core.goodbye(Date.now()));
        grace = setTimeout(() => {
          try {
            ws.close(1000);
          } catch { /* closing */ }
        }, Math.min(1500, timeoutMs / 2));
      } else ws.close(1000);
    } catch { /* already closing */ }
    return done.then(() => this.flushStore());
  }

  /** Accept the changed key of a contact (see {@linkcode ClientCore.trustKey}). */
  trustKey(target: string): Contact {
    const c = this.core.trustKey(target);
    this.pump();
    return c;
  }

  /** Mark a contact verified, or remove the mark (see {@linkcode ClientCore.setVerified}). */
  setVerified(target: string, verified: boolean): Contact {
    const c = this.core.setVerified(target, verified);
    this.pump();
    return c;
  }

  /** Accept our server's new key (see {@linkcode ClientCore.trustServerKey}). */
  trustServerKey(): ServerPin {
    const p = this.core.trustServerKey();
    this.pump();
    return p;
  }

  /** Resolves once every write to the store asked for so far is done. */
  async flushStore(): Promise<void> {
    while (this.storing.size > 0) await Promise.all([...this.storing]);
  }

  // ---------------------------------------------------------------- IO

  /** Stop reconnecting and the timers (the socket is closed by the caller). */
  private shutdown(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    try {
      this.ws?.close();
    } catch { /* ignore */ }
  }

  /** Open a WebSocket and wire it to the core. */
  private open(): void {
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      return this.lost(`cannot connect to ${this.url}: ${(e as Error).message}`);
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.core.opened(Date.now(), encodeBase64Url(crypto.getRandomValues(new Uint8Array(16))));
      this.pump();
      clearInterval(this.tickTimer);
      this.tickTimer = setInterval(() => {
        this.core.tick(Date.now());
        this.pump();
      }, TICK_MS);
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        this.deliver({ kind: "warning", detail: "ignored a binary frame from the server" });
        return;
      }
      this.frames.push(e.data);
      this.feed();
    };
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.tickTimer);
      this.tickTimer = undefined;
      for (const f of this.frames.splice(0)) this.core.frame(f, Date.now()); // what arrived before the close
      this.core.closed(Date.now(), e.code, e.reason);
      this.pump();
      this.lost(
        opened
          ? `connection closed (${e.code}${e.reason ? ": " + e.reason : ""})`
          : `cannot connect to ${this.url}`,
      );
    };
  }

  /**
   * Hand the frames that arrived to the core, in order, one at a time while it is not waiting for crypto on an
   * earlier one, and for at most ~8 ms per turn of the event loop: a burst (150 chunks of a file queued behind
   * the check of its FILE_START) never holds a browser's main thread for long.
   */
  private feed(): void {
    if (this.feeding) return;
    const start = Date.now();
    while (this.frames.length > 0 && !this.core.inboundWaiting) {
      this.core.frame(this.frames.shift()!, Date.now());
      this.pump();
      if (this.frames.length > 0 && Date.now() - start >= 8) {
        this.feeding = true;
        setTimeout(() => {
          this.feeding = false;
          this.feed();
        }, 0);
        return;
      }
    }
  }

  /** The connection is gone: fail the first connect, or reconnect with backoff. */
  private lost(why: string): void {
    if (this.firstReady) {
      const f = this.firstReady;
      this.firstReady = undefined;
      return f.reject(new Error(why));
    }
    if (this.stopped || !this.reconnect || this.core.phase === "refused") return;
    const inMs = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** this.attempt);
    this.attempt++;
    this.deliver({ kind: "reconnecting", inMs, attempt: this.attempt, error: why });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopped) this.open();
    }, inMs);
  }

  /** Hand an event to `onEvent`, or keep it until a handler is set. */
  private deliver(e: ClientEvent): void {
    if (this.onEvent) this.onEvent(e);
    else this.buffered.push(e);
  }

  /** Wait for the work under `ticket` (after carrying out what the core asked for so far). */
  private settled(ticket: number): Promise<void> {
    this.pump();
    if (this.pendingOk.delete(ticket)) return Promise.resolve();
    const err = this.pendingErrors.get(ticket);
    if (err !== undefined) {
      this.pendingErrors.delete(ticket);
      return Promise.reject(new Error(err));
    }
    return new Promise((resolve, reject) => this.tickets.set(ticket, { resolve, reject }));
  }

  /** Carry out what the core asked for. */
  private pump(): void {
    for (const o of this.core.drain()) {
      switch (o.kind) {
        case "send":
          if (this.ws?.readyState === WebSocket.OPEN) put(this.ws, o.text);
          break;
        case "crypto":
          this.cryptoRunner.run(o.op).then(
            (r) => this.cryptoDone(o.id, r),
            () => this.cryptoDone(o.id, null),
          );
          break;
        case "settled": {
          // A ticket settles after its creator registered it (settling needs a crypto result, which is async).
          const t = this.tickets.get(o.ticket);
          if (t) {
            this.tickets.delete(o.ticket);
            if (o.error) t.reject(new Error(o.error));
            else t.resolve();
          } else if (o.error) this.pendingErrors.set(o.ticket, o.error);
          else this.pendingOk.add(o.ticket);
          break;
        }
        case "event":
          this.onCoreEvent(o.event);
          break;
      }
    }
  }

  private readonly pendingErrors = new Map<number, string>();
  /** Frames received and not yet handed to the core (see `feed`). */
  private readonly frames: string[] = [];
  private feeding = false;
  private readonly pendingOk = new Set<number>();

  /** Feed a finished crypto operation back to the core. */
  private cryptoDone(id: number, r: CryptoResult): void {
    this.core.cryptoDone(id, r, Date.now());
    this.pump();
    this.feed();
  }

  /**
   * Hand a change to the store now (stores apply calls in call order and may fold many into one write); a
   * failure becomes a warning event.
   */
  private persist(what: string, write: (store: TrustStore) => Promise<void>): void {
    const store = this.store;
    if (!store) return;
    let p: Promise<void>;
    try {
      p = write(store);
    } catch (err) {
      p = Promise.reject(err);
    }
    const tracked = p.catch((err) =>
      this.deliver({ kind: "warning", detail: `could not save ${what}: ${(err as Error).message}` })
    ).finally(() => this.storing.delete(tracked));
    this.storing.add(tracked);
  }

  /** React to the core's events (first ready, refusals, what to store), then deliver them. */
  private onCoreEvent(e: ClientEvent): void {
    if (e.kind === "contact") this.persist("a contact", (st) => st.saveContact(e.contact));
    else if (e.kind === "serverPin") {
      this.persist("the server's key", (st) => st.saveServerPin(this.url, e.pin));
    } else if (e.kind === "seen") this.persist("the list of messages seen", (st) => st.addSeen(e.entry));
    if (e.kind === "ready") {
      this.attempt = 0;
      if (this.firstReady) {
        const f = this.firstReady;
        this.firstReady = undefined;
        f.resolve();
      }
    } else if (e.kind === "refused") {
      if (this.firstReady) {
        const f = this.firstReady;
        this.firstReady = undefined;
        f.reject(new HelloRefused(e.code, e.detail));
        return;
      }
      this.shutdown();
    }
    this.deliver(e);
  }
}
