/**
 * The browser's session over the shared client core: one {@linkcode SocpClient} (it reconnects with backoff
 * after a drop and sends again what the server had not accepted; until the first connection succeeds the session
 * retries itself, 1 s doubling to 30 s), and the conversations the view shows, built from its events. No DOM
 * here: main.ts renders the model and calls the actions.
 *
 * Message states, as the user sees them (the core's): `sending` (not on the wire yet: being encrypted or waiting
 * for the connection; never shown as sent), `sent` (written to a live connection for a recipient online now;
 * SOCP acknowledges no live delivery), `accepted` (the server acknowledged it: queued for an offline recipient or
 * handed to their home server), `failed` (refused, with the reason). Received messages say whether their
 * signature verified with the key presence announced for the sender.
 *
 * @module
 */
import {
  type ClientEvent,
  type Contact,
  HelloRefused,
  type OutgoingMessage,
  SocpClient,
} from "../../client/client.ts";
import type { Db } from "./db.ts";
import type { Identity } from "./identity.ts";
import {
  type ChatMessage,
  type Conversation,
  describe,
  fingerprintOf,
  type LinkStatus,
  type Person,
  PUBLIC,
} from "./model.ts";
import { Transfers } from "./transfers.ts";

export {
  ackRef,
  type ChatMessage,
  type Conversation,
  type FileItem,
  fingerprintOf,
  type LinkStatus,
  type MsgState,
  type Person,
  PUBLIC,
} from "./model.ts";

const MAX_BACKOFF_MS = 30_000;

/** The session behind the app. */
export class Session {
  status: LinkStatus = { kind: "connecting", attempt: 1 };
  client: SocpClient | null = null;
  readonly conversations = new Map<string, Conversation>();
  /** Contacts from IndexedDB (used until the first connection; then the core keeps them). */
  readonly stored = new Map<string, Contact>();
  /** The conversation on screen (its unread count stays 0). */
  current = PUBLIC;
  /** Called after every change (the view batches redraws). */
  onChange: () => void = () => {};
  /** Called on every progress step of a file transfer (the view moves that bar at once). */
  onProgress: (m: ChatMessage) => void = () => {};
  /** Largest file the server accepts (from /api/network). */
  maxFileBytes = 16 * 1024 * 1024;
  myFingerprint = "";
  private readonly outgoing = new Map<string, ChatMessage>();
  /** Typed before the first connection: sent once connected. */
  private readonly early: { to: string; msg: ChatMessage }[] = [];
  private readonly seen = new Set<string>();
  private stopped = false;
  private nextId = 1;
  private readonly files = new Transfers({
    client: () => this.client,
    maxFileBytes: () => this.maxFileBytes,
    mine: (prefix, to, text) => this.mine(prefix, to, text),
    newId: (prefix) => `${prefix}${this.nextId++}`,
    add: (m) => this.add(m),
    note: (text) => this.note(this.current, text),
    changed: () => this.changed(),
    progress: (m) => this.onProgress(m),
  });

  constructor(readonly me: Identity, private readonly db: Db, private readonly wsUrl: string) {
    this.conv(PUBLIC);
  }

  /** Load contacts and start connecting (returns at once). */
  async start(): Promise<void> {
    this.myFingerprint = await fingerprintOf(this.me.key.spki);
    for (const c of await this.db.contacts()) this.stored.set(c.userId, c);
    this.connectFirst();
  }

  /** Stop and close. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.close(1000);
  }

  private async connectFirst(): Promise<void> {
    let delay = 1000;
    for (let attempt = 1; !this.stopped; attempt++) {
      this.status = { kind: "connecting", attempt };
      this.changed();
      try {
        const c = await SocpClient.connect(this.wsUrl, {
          userId: this.me.userId,
          key: this.me.key,
          displayName: this.me.displayName,
          contacts: [...this.stored.values()],
          maxFileBytes: this.maxFileBytes,
          timeoutMs: 20_000,
        });
        this.client = c;
        c.onEvent = (e) => this.onEvent(e);
        for (const e of c.drainBuffered()) this.onEvent(e);
        this.status = { kind: "online" };
        this.changed();
        for (const { to, msg } of this.early.splice(0)) {
          const list = this.conv(to).messages;
          if (list.includes(msg)) list.splice(list.indexOf(msg), 1);
          this.dispatch(to, msg.text);
        }
        return;
      } catch (e) {
        if (e instanceof HelloRefused) {
          this.status = { kind: "refused", reason: `The server refused this identity: ${e.message}` };
          this.changed();
          return;
        }
        this.status = { kind: "offline", retryAt: Date.now() + delay, reason: (e as Error).message };
        this.changed();
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private changed(): void {
    this.onChange();
  }

  /** The conversation with `id`, created empty if new. */
  conv(id: string): Conversation {
    let c = this.conversations.get(id);
    if (!c) {
      c = { id, messages: [], unread: 0 };
      this.conversations.set(id, c);
    }
    return c;
  }

  /** Show a conversation (clears its unread count). */
  open(id: string): void {
    this.current = id;
    this.conv(id).unread = 0;
    this.changed();
  }

  private add(m: ChatMessage): void {
    const c = this.conv(m.conv);
    c.messages.push(m);
    if (c.messages.length > 2000) c.messages.splice(0, c.messages.length - 2000);
    if (m.dir === "in" && m.conv !== this.current) c.unread++;
    this.changed();
  }

  private note(conv: string, text: string): void {
    this.add({ id: `n${this.nextId++}`, conv, dir: "note", from: "", fromName: "", text, ts: Date.now() });
  }

  /** Everyone to show: online users across the network, then offline contacts. */
  people(): Person[] {
    const out = new Map<string, Person>();
    const c = this.client;
    if (c) {
      for (const p of c.list()) {
        out.set(p.userId, { ...p, online: true });
      }
      for (const k of c.known.values()) {
        if (!out.has(k.userId)) out.set(k.userId, { ...k, label: c.core.labelOf(k.userId), online: false });
      }
    } else {
      for (const k of this.stored.values()) out.set(k.userId, { ...k, label: k.name, online: false });
    }
    return [...out.values()].sort((a, b) =>
      a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
    );
  }

  /** A person's label (`name#abcd` when their display name is shared by someone else known). */
  label(userId: string): string {
    if (userId === PUBLIC) return "Public channel";
    if (userId === this.me.userId) return this.me.displayName;
    if (this.client) return this.client.core.labelOf(userId);
    return this.stored.get(userId)?.name ?? userId;
  }

  private onEvent(e: ClientEvent): void {
    switch (e.kind) {
      case "ready":
        this.status = { kind: "online" };
        this.changed();
        break;
      case "closed":
        this.status = {
          kind: "offline",
          retryAt: 0,
          reason: `connection lost (${e.reason || `code ${e.code}`})`,
        };
        this.changed();
        break;
      case "reconnecting":
        this.status = { kind: "offline", retryAt: Date.now() + e.inMs, reason: e.error ?? "connection lost" };
        this.changed();
        break;
      case "refused":
        this.status = { kind: "refused", reason: `The server refused this identity: ${e.code}: ${e.detail}` };
        this.changed();
        break;
      case "contact":
        this.stored.set(e.contact.userId, e.contact);
        this.db.saveContact(e.contact).catch(() => this.note(this.current, "Could not save a contact."));
        this.changed();
        break;
      case "joined":
      case "left":
      case "channel":
        this.changed();
        break;
      case "message":
        this.onMessage(e.message);
        break;
      case "dm":
      case "public": {
        const conv = e.kind === "dm" ? e.from : PUBLIC;
        const key = `${e.kind}|${e.from}|${e.ts}|${e.text}`;
        if (this.seen.has(key)) return; // the same message sent again after a reconnect
        this.seen.add(key);
        this.add({
          id: `m${this.nextId++}`,
          conv,
          dir: "in",
          from: e.from,
          fromName: e.fromName,
          text: e.text,
          ts: e.ts,
          verified: e.verified,
          warning: e.warning,
          unencrypted: e.unencrypted,
        });
        break;
      }
      case "error":
        // Refusals of our messages and files arrive as `message` / `fileRefused`; say the rest.
        this.note(this.current, `The server said ${e.code}: ${e.detail}`);
        break;
      case "warning":
        this.note(this.current, e.detail);
        break;
      case "ack":
      case "fileStart":
      case "fileProgress":
      case "file":
      case "fileSendProgress":
      case "fileRefused":
        this.files.onEvent(e);
        break;
      default:
        break;
    }
  }

  private onMessage(o: OutgoingMessage): void {
    let m = this.outgoing.get(o.id);
    if (!m) {
      m = {
        id: o.id,
        conv: o.kind === "public" ? PUBLIC : o.to,
        dir: "out",
        from: this.me.userId,
        fromName: this.me.displayName,
        text: o.text,
        ts: o.ts,
        state: o.state,
      };
      this.outgoing.set(o.id, m);
      this.add(m);
    }
    m.state = o.state;
    m.ts = o.ts;
    m.detail = o.error ?? describe(o);
    this.changed();
  }

  /** A new outgoing message of ours in conversation `to`, with a fresh id that starts with `prefix`. */
  private mine(prefix: string, to: string, text: string): ChatMessage {
    return {
      id: `${prefix}${this.nextId++}`,
      conv: to,
      dir: "out",
      from: this.me.userId,
      fromName: this.me.displayName,
      text,
      ts: Date.now(),
    };
  }

  /** Send a text message to a user id or to the public channel. */
  send(to: string, text: string): void {
    const msg: ChatMessage = {
      ...this.mine("e", to, text),
      state: "sending",
      detail: "waiting for the connection",
    };
    if (!this.client) {
      this.early.push({ to, msg });
      this.add(msg);
      return;
    }
    this.dispatch(to, text);
  }

  /** Hand a message to the client core; its `message` events carry the states from here on. */
  private async dispatch(to: string, text: string): Promise<void> {
    const c = this.client!;
    try {
      this.onMessage(to === PUBLIC ? await c.all(text) : await c.tell(to, text));
    } catch (e) {
      this.add({ ...this.mine("x", to, text), state: "failed", detail: (e as Error).message });
    }
  }

  /** Send a file to a user id or the public channel; the size is checked before anything is read or sent. */
  sendFile(to: string, file: File): Promise<void> {
    return this.files.sendFile(to, file);
  }
}
