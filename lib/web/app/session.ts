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
  FileStopped,
  HelloRefused,
  type OutgoingMessage,
  SocpClient,
} from "../../client/client.ts";
import { sanitizeFileName } from "../../client/filenames.ts";
import { msgRef } from "../../protocol/msg_ref.ts";
import { canonicalPayloadBytes } from "../../protocol/preimages.ts";
import type { Db } from "./db.ts";
import type { Identity } from "./identity.ts";

/** The public channel's conversation id. */
export const PUBLIC = "public";

/** What a message's sender-side state is (the client core's). */
export type MsgState = OutgoingMessage["state"];

/** A file attached to a message. */
export interface FileItem {
  fileId: string;
  name: string;
  size: number;
  /** Bytes encrypted and sent, or received and decrypted. */
  done: number;
  phase: "sending" | "receiving" | "complete" | "failed";
  /** Hex SHA-256 of the received bytes (checked against the sender's announcement). */
  sha256?: string;
  /** An object URL to download the received file. */
  url?: string;
  problem?: string;
}

/** One line of a conversation. */
export interface ChatMessage {
  id: string;
  conv: string;
  dir: "in" | "out" | "note";
  from: string;
  fromName: string;
  text: string;
  ts: number;
  state?: MsgState;
  detail?: string;
  verified?: boolean;
  warning?: string;
  unencrypted?: boolean;
  file?: FileItem;
}

/** A conversation: a DM with one user, or the public channel. */
export interface Conversation {
  id: string;
  messages: ChatMessage[];
  unread: number;
}

/** Connection status for the header. */
export type LinkStatus =
  | { kind: "connecting"; attempt: number }
  | { kind: "online" }
  | { kind: "offline"; retryAt: number; reason: string }
  | { kind: "refused"; reason: string };

/** A person as the app shows them. */
export interface Person {
  userId: string;
  name: string;
  /** `name`, or `name#abcd` when someone else known has the same name. */
  label: string;
  serverId: string;
  pubkey: string;
  online: boolean;
  /** "abcd:ef01:…" (SHA-256 of the key, first 16 bytes). */
  fingerprint: string;
}

const MAX_BACKOFF_MS = 30_000;

/** The ACK reference of a payload: base64url of SHA-256 of its canonical bytes. */
export async function ackRef(payload: unknown): Promise<string> {
  const bytes = new Uint8Array(canonicalPayloadBytes(payload));
  return msgRef(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

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
  private readonly receiving = new Map<string, ChatMessage>();
  private readonly sending = new Map<string, ChatMessage>();
  /** Files being sent whose id the client has not named yet. */
  private readonly unbound: ChatMessage[] = [];
  /** ACK reference of a sent file's FILE_END -> its message. */
  private readonly fileAcks = new Map<string, ChatMessage>();
  private stopped = false;
  private nextId = 1;

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
      case "ack": {
        const f = this.fileAcks.get(e.msgRef);
        if (f?.file) {
          this.fileAcks.delete(e.msgRef);
          if (f.file.phase !== "failed") {
            f.file.phase = "complete";
            f.detail = "relayed whole by the server";
          }
          this.changed();
        }
        break;
      }
      case "error":
        // Refusals of our messages and files arrive as `message` / `fileRefused`; say the rest.
        this.note(this.current, `The server said ${e.code}: ${e.detail}`);
        break;
      case "warning":
        this.note(this.current, e.detail);
        break;
      case "fileStart": {
        const conv = e.mode === "public" ? PUBLIC : e.from;
        const m: ChatMessage = {
          id: `f${this.nextId++}`,
          conv,
          dir: "in",
          from: e.from,
          fromName: e.fromName,
          text: "",
          ts: Date.now(),
          file: {
            fileId: e.fileId,
            name: sanitizeFileName(e.name),
            size: e.size,
            done: 0,
            phase: "receiving",
          },
        };
        this.receiving.set(`${e.from}|${e.fileId}`, m);
        this.add(m);
        break;
      }
      case "fileProgress":
        for (const [k, m] of this.receiving) {
          if (k.endsWith(`|${e.fileId}`) && m.file) {
            m.file.done = e.received;
            this.onProgress(m);
          }
        }
        break;
      case "file":
        this.onFile(e);
        break;
      case "fileSendProgress": {
        const m = this.sendingFor(e.fileId, e.name);
        if (m?.file) {
          m.file.done = e.sent;
          this.onProgress(m);
        }
        break;
      }
      case "fileRefused": {
        const m = this.sendingFor(e.fileId, e.name);
        if (m?.file) {
          this.sending.delete(e.fileId);
          m.file.phase = "failed";
          m.file.problem = e.reason;
          this.changed();
        } else this.note(this.current, `File ${e.name} stopped: ${e.reason}`);
        break;
      }
      default:
        break;
    }
  }

  /** Our transfer `fileId` (bound to its message at its first event: sendFile names the id only at the end). */
  private sendingFor(fileId: string, name: string): ChatMessage | undefined {
    const m = this.sending.get(fileId);
    if (m) return m;
    const i = this.unbound.findIndex((u) => u.file?.name === name);
    if (i < 0) return undefined;
    const [u] = this.unbound.splice(i, 1);
    u.file!.fileId = fileId;
    this.sending.set(fileId, u);
    return u;
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

  private onFile(e: Extract<ClientEvent, { kind: "file" }>): void {
    const k = `${e.from}|${e.fileId}`;
    const m = this.receiving.get(k);
    this.receiving.delete(k);
    if (!m?.file) return;
    m.verified = e.verified;
    if (!e.bytes) {
      m.file.phase = "failed";
      m.file.problem = e.problem ?? "the file did not arrive whole";
    } else {
      m.file.done = e.bytes.length;
      m.file.sha256 = e.sha256;
      m.file.url = URL.createObjectURL(
        new Blob([new Uint8Array(e.bytes)], { type: "application/octet-stream" }),
      );
      m.file.phase = "complete";
    }
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
  async sendFile(to: string, file: File): Promise<void> {
    const m: ChatMessage = {
      ...this.mine("o", to, ""),
      file: { fileId: "", name: sanitizeFileName(file.name), size: file.size, done: 0, phase: "sending" },
    };
    this.add(m);
    const fail = (problem: string) => {
      m.file!.phase = "failed";
      m.file!.problem = problem;
      this.changed();
    };
    if (file.size > this.maxFileBytes) {
      return fail(
        `too large: ${(file.size / 1048576).toFixed(1)} MiB; this server accepts up to ${
          (this.maxFileBytes / 1048576).toFixed(0)
        } MiB. Nothing was sent.`,
      );
    }
    const c = this.client;
    if (!c || !c.connected) return fail("not connected: nothing was sent; send it again once online");
    const bytes = new Uint8Array(await file.arrayBuffer());
    this.unbound.push(m);
    try {
      const fileId = await c.sendFile(to, m.file!.name, bytes, (sent, size) => {
        m.file!.done = sent;
        m.file!.size = size;
        this.onProgress(m);
      });
      m.file!.fileId = fileId;
      if (this.unbound.includes(m)) this.unbound.splice(this.unbound.indexOf(m), 1);
      this.sending.set(fileId, m); // a refusal may still come (the receiver checks at FILE_START and at the end)
      if (m.file!.phase === "sending") {
        m.detail = "sent; waiting for the server to confirm";
        this.fileAcks.set(await ackRef({ file_id: fileId }), m);
      }
      this.changed();
    } catch (e) {
      if (this.unbound.includes(m)) this.unbound.splice(this.unbound.indexOf(m), 1);
      if (e instanceof FileStopped) this.sending.delete(e.fileId);
      if (m.file!.phase !== "failed") fail((e as Error).message);
    }
  }
}

function describe(o: OutgoingMessage): string {
  switch (o.state) {
    case "sending":
      return "not on the wire yet: it goes out when connected";
    case "sent":
      return o.kind === "public" ? "sent to everyone" : "written to the server for a recipient online now";
    case "accepted":
      return o.recipientOffline
        ? "accepted: queued by the server until they come online"
        : "accepted by the server";
    case "failed":
      return "not sent";
  }
}

/** SHA-256 fingerprint of an SPKI, "abcd:ef01:…" (16 bytes), as the node shows its own. */
export async function fingerprintOf(spki: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(spki)));
  return [...h.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("").match(/.{4}/g)!.join(
    ":",
  );
}
