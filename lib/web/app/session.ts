/**
 * The browser's session: one {@linkcode SocpClient} at a time, reconnected with backoff (1 s doubling to 30 s),
 * and the app's model of conversations built from its events. No DOM here: the view (view.ts) renders the model
 * and calls the actions.
 *
 * Message states, as the user sees them:
 * - `waiting`: not handed to a server yet (typed while offline, or the connection dropped before the server took
 *   it); it goes out once connected. Never shown as sent.
 * - `sent`: handed to our server over a live connection, addressed to someone online now.
 * - `queued`: the server acknowledged it (the recipient was offline: it is held until they return).
 * - `failed`: the server refused it (the reason is shown).
 * Received messages carry whether their signature verified with the key presence announced for the sender.
 *
 * @module
 */
import { type ClientEvent, HelloRefused, type Peer, SocpClient } from "../../client/client.ts";
import { encodeBase64Url } from "../../protocol/base64url.ts";
import type { AnyEnvelope } from "../../protocol/envelope.ts";
import { decodePublicKey } from "../../protocol/keys.ts";
import { canonicalPayloadBytes } from "../../protocol/preimages.ts";
import type { Contact, Db } from "./db.ts";
import type { Identity } from "./identity.ts";
import { sanitizeFileName } from "../../client/filenames.ts";

/** The public channel's conversation id. */
export const PUBLIC = "public";

/** What a message's sender-side state is. */
export type MsgState = "waiting" | "sent" | "queued" | "failed";

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

interface Outgoing {
  msg: ChatMessage;
  kind: "dm" | "public";
  to: string;
  /** The frame as first sent: resent unchanged (receivers drop the duplicate by its signature). */
  env?: AnyEnvelope;
  /** The ACK reference when the server is expected to acknowledge it. */
  ackRef?: string;
}

/** A peer as the app shows it. */
export interface Person {
  userId: string;
  name: string;
  serverId: string;
  pubkey: string;
  online: boolean;
  /** "abcd:ef01:…" (SHA-256 of the key, first 16 bytes). */
  fingerprint: string;
}

const MAX_BACKOFF_MS = 30_000;
/** A frame's ts must be within the server's freshness window; past this age a waiting message is re-signed. */
const RESEND_VERBATIM_MS = 2 * 60_000;

/** SHA-256 fingerprint of a key string, "abcd:ef01:…" (16 bytes), as the node shows its own. */
export async function keyFingerprint(pubkey: string): Promise<string> {
  const d = decodePublicKey(pubkey);
  if (!d.ok) return "?";
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(d.key.spki)));
  return [...h.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("").match(/.{4}/g)!.join(
    ":",
  );
}

/** The ACK reference of a payload: base64url of SHA-256 of its canonical bytes. */
export async function ackRef(payload: unknown): Promise<string> {
  const bytes = new Uint8Array(canonicalPayloadBytes(payload));
  return encodeBase64Url(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)));
}

/** Hex SHA-256 of bytes. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return [...h].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The session behind the app. */
export class Session {
  status: LinkStatus = { kind: "connecting", attempt: 1 };
  client: SocpClient | null = null;
  readonly conversations = new Map<string, Conversation>();
  readonly contacts = new Map<string, Contact>();
  readonly fingerprints = new Map<string, string>();
  /** The conversation on screen (its unread count stays 0). */
  current = PUBLIC;
  /** Called after every change (the view batches redraws). */
  onChange: () => void = () => {};
  /** Called on every progress step of a file transfer (the view updates that bar at once). */
  onProgress: (m: ChatMessage) => void = () => {};
  /** Largest file the server accepts (from /api/network). */
  maxFileBytes = 16 * 1024 * 1024;
  myFingerprint = "";
  private readonly outbox: Outgoing[] = [];
  private readonly seen = new Set<string>();
  private readonly sendingFiles = new Map<string, ChatMessage>();
  /** ACK reference of a sent file's FILE_END -> its message. */
  private readonly fileAcks = new Map<string, ChatMessage>();
  private readonly receivingFiles = new Map<string, ChatMessage>();
  private stopped = false;
  private attempt = 0;
  private wake?: () => void;
  private nextId = 1;

  constructor(readonly me: Identity, private readonly db: Db, private readonly wsUrl: string) {
    this.conv(PUBLIC);
  }

  /** Load contacts and start connecting (returns at once; reconnects until {@linkcode stop}). */
  async start(): Promise<void> {
    this.myFingerprint = await keyFingerprint(this.me.key.publicKey);
    for (const c of await this.db.contacts()) {
      this.contacts.set(c.userId, c);
      this.fingerprints.set(c.userId, await keyFingerprint(c.pubkey));
    }
    this.loop();
  }

  /** Stop reconnecting and close. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.client?.close(1000);
  }

  /** Try now instead of waiting for the backoff. */
  retryNow(): void {
    this.wake?.();
  }

  private async loop(): Promise<void> {
    let delay = 1000;
    while (!this.stopped) {
      this.attempt++;
      this.status = { kind: "connecting", attempt: this.attempt };
      this.changed();
      let client: SocpClient;
      try {
        client = await SocpClient.connect(this.wsUrl, {
          userId: this.me.userId,
          key: this.me.key,
          displayName: this.me.displayName,
          timeoutMs: 20_000,
        });
      } catch (e) {
        if (e instanceof HelloRefused && e.code !== "NAME_IN_USE") {
          this.status = { kind: "refused", reason: `The server refused this identity (${e.message}).` };
          this.changed();
          return;
        }
        const reason = e instanceof HelloRefused
          ? "This identity is already connected (another tab or device?)."
          : (e as Error).message;
        this.status = { kind: "offline", retryAt: Date.now() + delay, reason };
        this.changed();
        await this.sleep(delay);
        delay = Math.min(delay * 2, MAX_BACKOFF_MS);
        continue;
      }
      if (this.stopped) {
        await client.close(1000);
        return;
      }
      delay = 1000;
      const closed = Promise.withResolvers<string>();
      this.client = client;
      for (const c of this.contacts.values()) {
        if (!client.known.has(c.userId)) {
          client.known.set(c.userId, {
            userId: c.userId,
            serverId: c.serverId,
            name: c.name,
            pubkey: c.pubkey,
            verified: false,
          });
        }
      }
      client.onEvent = (e) => {
        if (e.kind === "closed") closed.resolve(e.reason || `code ${e.code}`);
        else this.onEvent(e);
      };
      for (const e of client.drainBuffered()) this.onEvent(e);
      for (const p of client.directory.values()) this.remember(p);
      this.status = { kind: "online" };
      this.changed();
      this.flush();
      const reason = await closed.promise;
      this.client = null;
      // What the server had not acknowledged goes out again on the next connection.
      for (const o of this.outbox) {
        if (o.msg.state === "sent" && o.ackRef) o.msg.state = "waiting";
      }
      for (const m of this.sendingFiles.values()) {
        if (m.file && m.file.phase === "sending") {
          m.file.phase = "failed";
          m.file.problem = "the connection dropped during the transfer; send it again";
        }
      }
      this.sendingFiles.clear();
      if (this.stopped) break;
      this.status = {
        kind: "offline",
        retryAt: Date.now() + delay,
        reason: `connection lost (${reason})`,
      };
      this.changed();
      await this.sleep(delay);
      delay = Math.min(delay * 2, MAX_BACKOFF_MS);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => (this.wake = undefined, resolve()), ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
    });
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
      for (const p of c.directory.values()) {
        out.set(p.userId, {
          userId: p.userId,
          name: p.name,
          serverId: p.serverId,
          pubkey: p.pubkey,
          online: true,
          fingerprint: this.fingerprints.get(p.userId) ?? "",
        });
      }
    }
    for (const k of this.contacts.values()) {
      if (!out.has(k.userId)) {
        out.set(k.userId, {
          userId: k.userId,
          name: k.name,
          serverId: k.serverId,
          pubkey: k.pubkey,
          online: false,
          fingerprint: this.fingerprints.get(k.userId) ?? "",
        });
      }
    }
    return [...out.values()].sort((a, b) =>
      a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
    );
  }

  /** A person's label, with a fingerprint suffix when their display name is shared by someone else. */
  label(userId: string): string {
    if (userId === PUBLIC) return "Public channel";
    const all = this.people();
    const p = all.find((x) => x.userId === userId);
    const name = p?.name ?? this.contacts.get(userId)?.name ?? userId;
    const clash = all.some((x) => x.userId !== userId && x.name.toLowerCase() === name.toLowerCase()) ||
      (userId !== this.me.userId && name.toLowerCase() === this.me.displayName.toLowerCase());
    const fp = this.fingerprints.get(userId);
    return clash && fp ? `${name} (${fp.slice(-9)})` : name;
  }

  private remember(p: Peer): void {
    if (!this.fingerprints.has(p.userId)) {
      keyFingerprint(p.pubkey).then((fp) => {
        this.fingerprints.set(p.userId, fp);
        this.changed();
      });
    }
  }

  private async saveContact(userId: string): Promise<void> {
    if (userId === this.me.userId) return;
    const p = this.client?.directory.get(userId) ?? this.client?.known.get(userId);
    if (!p || !p.pubkey) return;
    const c: Contact = { userId, name: p.name, pubkey: p.pubkey, serverId: p.serverId, lastSeen: Date.now() };
    const old = this.contacts.get(userId);
    this.contacts.set(userId, c);
    if (!old || old.pubkey !== c.pubkey || old.serverId !== c.serverId || old.name !== c.name) {
      await this.db.saveContact(c);
    }
  }

  private onEvent(e: ClientEvent): void {
    switch (e.kind) {
      case "joined":
        this.remember(e.peer);
        if (this.contacts.has(e.peer.userId)) this.saveContact(e.peer.userId);
        break;
      case "left":
        break;
      case "channel":
        this.flush();
        break;
      case "dm":
      case "public": {
        const conv = e.kind === "dm" ? e.from : PUBLIC;
        const key = `${e.kind}|${e.from}|${e.ts}|${e.text}`;
        if (this.seen.has(key)) return; // the same message resent after a reconnect
        this.seen.add(key);
        if (e.kind === "dm") this.saveContact(e.from);
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
        });
        break;
      }
      case "ack":
        this.onAck(e.msgRef);
        break;
      case "error":
        this.onError(e.code, e.detail);
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
        this.receivingFiles.set(`${e.from}|${e.fileId}`, m);
        this.add(m);
        break;
      }
      case "fileProgress": {
        for (const [k, m] of this.receivingFiles) {
          if (k.endsWith(`|${e.fileId}`) && m.file) {
            m.file.done = e.received;
            this.onProgress(m);
          }
        }
        this.changed();
        break;
      }
      case "file":
        this.onFile(e);
        break;
      default:
        break;
    }
  }

  private async onFile(e: Extract<ClientEvent, { kind: "file" }>): Promise<void> {
    const k = `${e.from}|${e.fileId}`;
    const m = this.receivingFiles.get(k);
    this.receivingFiles.delete(k);
    if (!m?.file) return;
    m.verified = e.verified;
    if (!e.bytes) {
      m.file.phase = "failed";
      m.file.problem = e.problem ?? "the file did not arrive whole";
    } else {
      m.file.done = e.bytes.length;
      m.file.sha256 = await sha256Hex(e.bytes);
      m.file.url = URL.createObjectURL(
        new Blob([new Uint8Array(e.bytes)], { type: "application/octet-stream" }),
      );
      m.file.phase = "complete";
    }
    this.changed();
  }

  private onAck(ref: string): void {
    const i = this.outbox.findIndex((o) => o.ackRef === ref);
    if (i >= 0) {
      const [o] = this.outbox.splice(i, 1);
      o.msg.state = "queued";
      o.msg.detail = "accepted by the server; delivered when they come online";
      this.changed();
      return;
    }
    const f = this.fileAcks.get(ref);
    if (f?.file) {
      this.fileAcks.delete(ref);
      this.sendingFiles.delete(f.id);
      if (f.file.phase === "sending") f.file.phase = "complete";
      f.detail = "the server relayed the whole file";
      this.changed();
    }
  }

  private onError(code: string, detail: string): void {
    // A refusal of something we sent: mark the newest unacknowledged message it can be about.
    for (let i = this.outbox.length - 1; i >= 0; i--) {
      const o = this.outbox[i];
      if (o.msg.state === "sent" && (detail.includes(o.to) || code === "USER_NOT_FOUND" && o.kind === "dm")) {
        this.outbox.splice(i, 1);
        o.msg.state = "failed";
        o.msg.detail = `${code}: ${detail}`;
        this.changed();
        return;
      }
    }
    for (const m of this.sendingFiles.values()) {
      if (m.file && m.file.phase === "sending") {
        m.file.phase = "failed";
        m.file.problem = `refused by the server: ${detail || code}`;
        this.changed();
        return;
      }
    }
    this.note(this.current, `The server said ${code}: ${detail}`);
  }

  /** Send a text message to a user id or to the public channel. */
  send(to: string, text: string): void {
    const msg: ChatMessage = {
      id: `o${this.nextId++}`,
      conv: to,
      dir: "out",
      from: this.me.userId,
      fromName: this.me.displayName,
      text,
      ts: Date.now(),
      state: "waiting",
    };
    this.outbox.push({ msg, kind: to === PUBLIC ? "public" : "dm", to });
    if (to !== PUBLIC) this.saveContact(to);
    this.add(msg);
    this.flush();
  }

  private flushing = false;

  /** Hand waiting messages to the server, in order. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      for (const o of [...this.outbox]) {
        const c = this.client;
        if (!c || this.status.kind !== "online") return;
        if (o.msg.state !== "waiting") continue;
        try {
          if (o.env && Date.now() - o.env.ts < RESEND_VERBATIM_MS) {
            await c.send(o.env.type, o.env.to, o.env.payload as never, false, o.env.ts);
          } else if (o.kind === "dm") {
            o.env = await c.tell(o.to, o.msg.text);
          } else {
            o.env = await c.all(o.msg.text);
          }
        } catch (e) {
          if (this.client !== c) return; // the connection went while we were at it: next time
          const why = (e as Error).message;
          if (/channel key has not arrived/.test(why)) return; // retried when the key arrives
          o.msg.state = "failed";
          o.msg.detail = why;
          this.outbox.splice(this.outbox.indexOf(o), 1);
          this.changed();
          continue;
        }
        if (this.client !== c) return;
        o.msg.ts = o.env.ts;
        o.msg.state = "sent";
        // The server acknowledges DMs it holds for an offline user; live deliveries are not acknowledged.
        if (o.kind === "dm" && !c.isOnline(o.to)) {
          o.ackRef = await ackRef(o.env.payload);
          o.msg.detail = "recipient offline: waiting for the server to accept it";
        } else {
          this.outbox.splice(this.outbox.indexOf(o), 1);
          o.msg.detail = o.kind === "dm"
            ? "handed to the server for a recipient online now"
            : "sent to everyone";
        }
        this.changed();
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Send a file to a user id or the public channel; size checked first. */
  async sendFile(to: string, file: File): Promise<void> {
    const m: ChatMessage = {
      id: `o${this.nextId++}`,
      conv: to,
      dir: "out",
      from: this.me.userId,
      fromName: this.me.displayName,
      text: "",
      ts: Date.now(),
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
    if (!c || this.status.kind !== "online") return fail("not connected: send it again once online");
    const bytes = new Uint8Array(await file.arrayBuffer());
    const key = `${m.id}`;
    this.sendingFiles.set(key, m);
    try {
      const fileId = await c.sendFile(to, m.file!.name, bytes, (sent, size) => {
        m.file!.done = sent;
        m.file!.size = size;
        this.onProgress(m);
        this.changed();
      });
      if (m.file!.phase !== "sending") return; // refused or dropped meanwhile
      m.file!.fileId = fileId;
      m.detail = "sent; waiting for the server to confirm";
      this.fileAcks.set(await ackRef({ file_id: fileId }), m);
      this.changed();
    } catch (e) {
      this.sendingFiles.delete(key);
      fail((e as Error).message);
    }
  }
}
