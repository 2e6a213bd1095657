/// <reference lib="dom" />
/**
 * The browser's session over the shared client core, and the conversations the view shows. No DOM drawing here:
 * main.ts renders the model and calls the actions.
 *
 * **One connection per identity and browser.** Every tab of the app runs a Session; one of them, the *leader*
 * (it holds the Web Lock `socp-tab-<user id>`), owns the {@linkcode SocpClient} and the history; the others are
 * *followers*: they ask the leader (BroadcastChannel `socp-tab-<user id>`) for a snapshot, mirror every change
 * it announces, and hand it what their user does (send, accept a file, mark read). When the leader tab closes,
 * the lock passes to a follower, which connects in its place. So the server sees one session, and every tab
 * shows the same state.
 *
 * **History.** The leader stores every message and the state (unread counts, the replay dedupe) in the encrypted
 * history (history.ts), and received files within its quota; a reload or a browser restart shows everything
 * again, in send order (each message's own `ts`). Messages of ours still waiting for the connection are sent
 * once connected, also after a reload.
 *
 * **Another device.** The same identity connected elsewhere (the server refuses with NAME_IN_USE, or closes this
 * session because a newer one took over) is said in words, and the session stops: it connects again only when
 * the user asks (no reconnect war).
 *
 * Message states, as the user sees them (the core's): `sending` (not on the wire yet), `sent` (written to a live
 * connection for a recipient online now; SOCP acknowledges no live delivery), `accepted` (the server acknowledged
 * it: queued for an offline recipient or handed to their home server), `failed` (refused, with the reason).
 * Received messages say whether their signature verified with the key presence announced for the sender.
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
import type { PrivateKey } from "../../crypto/rsa.ts";
import { sha256 } from "../../protocol/sha256.ts";
import type { Db } from "./db.ts";
import { type AppState, type History, MAX_SEEN } from "./history.ts";
import type { Identity } from "./identity.ts";
import {
  type ChatMessage,
  type Conversation,
  describe,
  fingerprintOf,
  type LinkStatus,
  type Person,
  PUBLIC,
  type TrustView,
} from "./model.ts";
import { Transfers } from "./transfers.ts";
import { IdbTrustStore } from "./trust_store.ts";
import { keyFingerprint } from "../../client/trust.ts";

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
  type TrustView,
} from "./model.ts";

const MAX_BACKOFF_MS = 30_000;
/** Messages kept per conversation (older ones leave the history too). */
const MAX_PER_CONV = 2000;
/** Files up to this size from a verified contact are accepted without asking. */
export const AUTO_ACCEPT_BYTES = 1024 * 1024;
/** After the leader tab closed, the server may not have seen its socket close yet: a few tries, then ask. */
const HANDOVER_TRIES = 4;

/** A close or error from the server that says a newer session of this identity took over. */
const TAKEN_OVER =
  /elsewhere|another (session|connection|device)|newer session|taken over|took over|superseded|replaced/i;

/** What the leader tab tells the others. */
type FromLeader =
  | {
    t: "snap";
    convs: Conversation[];
    status: LinkStatus;
    people: Person[];
    labels: Record<string, string>;
    serverId: string;
    trust: Record<string, TrustView>;
    keys: KeysView;
  }
  | { t: "msg"; m: ChatMessage }
  | { t: "prog"; id: string; conv: string; done: number; size: number }
  | { t: "status"; status: LinkStatus }
  | {
    t: "people";
    people: Person[];
    labels: Record<string, string>;
    serverId: string;
    trust: Record<string, TrustView>;
    keys: KeysView;
  }
  | { t: "unread"; conv: string; n: number }
  | { t: "drop"; conv: string }
  | { t: "wiped" };

/** What the other tabs ask the leader (or tell everyone). */
type ToLeader =
  | { t: "hello" }
  | { t: "send"; to: string; text: string }
  | { t: "file"; to: string; file: File }
  | { t: "read"; conv: string }
  | { t: "tab"; tab: string; visible: boolean; current: string }
  | { t: "bye"; tab: string }
  | { t: "accept"; id: string; conv: string }
  | { t: "decline"; id: string; conv: string }
  | { t: "retry" }
  | { t: "reconnect" }
  | { t: "dropConv"; conv: string }
  | { t: "wipe" }
  | { t: "signout" }
  | { t: "signedout" }
  | { t: "trustKey"; id: string }
  | { t: "setVerified"; id: string; verified: boolean }
  | { t: "trustServerKey" };

/** Our server's and the public channel's keys, as the app shows them. */
export interface KeysView {
  /** Fingerprint of the server's pinned key ("" before). */
  server: string;
  /** Fingerprint of a different key our server presents now, not accepted yet ("" when none). */
  serverPending: string;
  /** Fingerprint of the public channel's key ("" before it arrived). */
  channel: string;
}

/** Insert `m` into `list` by its `ts` (after messages with the same time). */
function insertSorted(list: ChatMessage[], m: ChatMessage): void {
  let i = list.length;
  while (i > 0 && list[i - 1].ts > m.ts) i--;
  list.splice(i, 0, m);
}

/** The session behind the app (one per tab). */
export class Session {
  status: LinkStatus = { kind: "connecting", attempt: 1 };
  client: SocpClient | null = null;
  readonly conversations = new Map<string, Conversation>();
  /** Contacts from IndexedDB (used until the first connection; then the core keeps them). */
  readonly stored = new Map<string, Contact>();
  /** The conversation on screen in this tab. */
  current = PUBLIC;
  /** This tab holds the connection (else it mirrors the tab that does). */
  role: "leader" | "follower" = "follower";
  /** Called after every change (the view batches redraws). */
  onChange: () => void = () => {};
  /** Called on every progress step of a file transfer (the view moves that bar at once). */
  onProgress: (m: ChatMessage) => void = () => {};
  /** Called when a message arrives (the view notifies while hidden). */
  onIncoming: (m: ChatMessage) => void = () => {};
  /** Called when this identity was signed out (here or in another tab). */
  onSignedOut: () => void = () => {};
  /** Largest file the server accepts (from /api/network). */
  maxFileBytes = 16 * 1024 * 1024;
  myFingerprint = "";
  /** Whether the user looks at this tab (the view keeps it current). */
  visible = true;
  /** Public channel key hook (the app moves its decryptions to workers). */
  onChannelKey?: (key: PrivateKey) => void;

  private readonly tab = crypto.randomUUID();
  private readonly chan: BroadcastChannel | null;
  /** The leader's view of the tabs: which conversation each shows, and whether it is visible. */
  private readonly tabs = new Map<string, { visible: boolean; current: string }>();
  /** Follower: what the leader said about people. */
  private mirror: {
    people: Person[];
    labels: Record<string, string>;
    serverId: string;
    trust: Record<string, TrustView>;
    keys: KeysView;
  } = {
    people: [],
    labels: {},
    serverId: "",
    trust: {},
    keys: { server: "", serverPending: "", channel: "" },
  };
  /** Where the client core keeps pins, marks and the messages already shown (leader). */
  private readonly trustStore: IdbTrustStore;
  /** Our messages by the core's id. */
  private readonly outgoing = new Map<string, ChatMessage>();
  /** The message whose text is being handed to the core right now (its `message` events bind to it). */
  private binding: ChatMessage | null = null;
  /** Typed (or stored) before the connection: sent once connected. */
  private readonly early: ChatMessage[] = [];
  private readonly seen = new Set<string>();
  private seenOrder: string[] = [];
  private stopped = false;
  private wake: (() => void) | null = null;
  private release: (() => void) | null = null;
  private snapshotted = false;
  private readonly dirty = new Set<ChatMessage>();
  private readonly removed: string[] = [];
  private stateDirty = false;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private peopleTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly files = new Transfers({
    client: () => this.client,
    maxFileBytes: () => this.maxFileBytes,
    mine: (prefix, to, text) => this.mine(prefix, to, text),
    newId: (prefix) => this.newId(prefix),
    add: (m) => this.add(m),
    note: (text) => this.note(this.current, text),
    changed: (m) => this.touch(m),
    progress: (m) => this.progressed(m),
    keep: (m, bytes) => this.keep(m, bytes),
    // A small file from a contact marked verified (the safety codes matched) needs no click.
    autoAccept: (e) => e.size <= AUTO_ACCEPT_BYTES && !!e.verified && this.trustOf(e.from)?.verified === true,
  });

  constructor(
    readonly me: Identity,
    private readonly db: Db,
    private readonly history: History,
    private readonly wsUrl: string,
  ) {
    this.conv(PUBLIC);
    this.trustStore = new IdbTrustStore(db, history);
    this.chan = typeof BroadcastChannel === "function" ? new BroadcastChannel(`socp-tab-${me.userId}`) : null;
    if (this.chan) this.chan.onmessage = (e) => this.onTabMessage(e.data);
    addEventListener("pagehide", (e) => {
      this.post({ t: "bye", tab: this.tab });
      this.flush();
      // Say goodbye now, so the server ends this session at once and another tab can take over.
      if (!(e as PageTransitionEvent).persisted) this.client?.close(500);
    });
  }

  private newId(prefix: string): string {
    return `${prefix}-${crypto.randomUUID()}`;
  }

  /** Load contacts and the history, then lead (connect) or follow the tab that does (returns at once). */
  async start(): Promise<void> {
    this.myFingerprint = await fingerprintOf(this.me.key.spki);
    for (const c of await this.db.contacts()) this.stored.set(c.userId, c);
    await this.loadHistory();
    this.changed();
    this.elect();
  }

  private async loadHistory(): Promise<void> {
    const { messages, state } = await this.history.load();
    for (const m of messages) {
      const f = m.file;
      if (f && (f.phase === "offered" || f.phase === "receiving" || f.phase === "sending")) {
        // The page closed in the middle: the transfer is gone (the core keeps nothing across pages).
        f.phase = "failed";
        f.problem = m.dir === "in"
          ? "the page was closed before the file arrived; ask for it again"
          : "the page was closed before it was sent; send it again";
        this.dirty.add(m);
      }
      const c = this.conv(m.conv);
      insertSorted(c.messages, m);
      if (m.dir === "out" && !m.file && m.state === "sending") this.early.push(m);
    }
    for (const [conv, n] of Object.entries(state.unread)) {
      if (typeof n === "number" && n > 0) this.conv(conv).unread = n;
    }
    this.seenOrder = state.seen.slice(-MAX_SEEN);
    for (const k of this.seenOrder) this.seen.add(k);
    this.early.sort((a, b) => a.ts - b.ts);
  }

  // ---------------------------------------------------------------- tabs

  private post(msg: FromLeader | ToLeader): void {
    try {
      this.chan?.postMessage(msg);
    } catch { /* closed */ }
  }

  /** Take the lock (lead) if free, else follow and queue for it. */
  private elect(): void {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (!locks || !this.chan) {
      this.lead(false);
      return;
    }
    const name = `socp-tab-${this.me.userId}`;
    const hold = () => new Promise<void>((resolve) => (this.release = resolve));
    locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock) {
        this.lead(false);
        return hold();
      }
      this.follow();
      locks.request(name, () => {
        if (this.stopped) return;
        this.lead(true);
        return hold();
      }).catch(() => {});
      return undefined;
    }).catch(() => this.lead(false));
  }

  private follow(): void {
    this.role = "follower";
    this.status = { kind: "connecting", attempt: 1 };
    this.changed();
    // Ask for the leader's state until it answers (it may still be loading).
    let tries = 0;
    const ask = () => {
      if (this.snapshotted || this.role !== "follower" || this.stopped || tries++ > 60) return;
      this.post({ t: "hello" });
      setTimeout(ask, 1000);
    };
    ask();
    this.sayTab();
  }

  private lead(handover: boolean): void {
    this.role = "leader";
    this.tabs.set(this.tab, { visible: this.visible, current: this.current });
    this.changed();
    this.connectFirst(handover ? HANDOVER_TRIES : 1);
  }

  /** Tell the leader what this tab shows. */
  sayTab(): void {
    if (this.role === "leader") {
      this.tabs.set(this.tab, { visible: this.visible, current: this.current });
      if (this.visible) this.read(this.current);
    } else this.post({ t: "tab", tab: this.tab, visible: this.visible, current: this.current });
  }

  private onTabMessage(d: FromLeader | ToLeader): void {
    if (!d || typeof d !== "object") return;
    if (d.t === "signedout") {
      this.stopLocal();
      this.onSignedOut();
      return;
    }
    if (d.t === "signout") {
      if (this.role === "leader") this.stopLocal();
      return;
    }
    if (this.role === "leader") this.fromFollower(d as ToLeader);
    else this.fromLeader(d as FromLeader);
  }

  private fromFollower(d: ToLeader): void {
    switch (d.t) {
      case "hello":
        this.post({
          t: "snap",
          convs: [...this.conversations.values()],
          status: this.status,
          ...this.peopleMsg(),
        });
        break;
      case "send":
        this.send(d.to, d.text);
        break;
      case "file":
        this.sendFile(d.to, d.file);
        break;
      case "read":
        this.read(d.conv);
        break;
      case "tab":
        this.tabs.set(d.tab, { visible: d.visible, current: d.current });
        if (d.visible) this.read(d.current);
        break;
      case "bye":
        this.tabs.delete(d.tab);
        break;
      case "accept":
      case "decline": {
        const m = this.conv(d.conv).messages.find((x) => x.id === d.id);
        if (m) d.t === "accept" ? this.files.accept(m) : this.files.decline(m);
        break;
      }
      case "retry":
        this.retryNow();
        break;
      case "reconnect":
        this.reconnect();
        break;
      case "dropConv":
        this.deleteConversation(d.conv);
        break;
      case "wipe":
        this.wipeHistory();
        break;
      case "trustKey":
        this.trustKey(d.id);
        break;
      case "setVerified":
        this.setVerified(d.id, d.verified);
        break;
      case "trustServerKey":
        this.trustServerKey();
        break;
    }
  }

  private fromLeader(d: FromLeader): void {
    switch (d.t) {
      case "snap":
        this.snapshotted = true;
        this.conversations.clear();
        for (const c of d.convs) this.conversations.set(c.id, c);
        this.conv(PUBLIC);
        this.status = d.status;
        this.mirror = {
          people: d.people,
          labels: d.labels,
          serverId: d.serverId,
          trust: d.trust,
          keys: d.keys,
        };
        this.sayTab();
        this.changed();
        break;
      case "msg": {
        const c = this.conv(d.m.conv);
        const i = c.messages.findIndex((x) => x.id === d.m.id);
        if (i >= 0) c.messages.splice(i, 1);
        insertSorted(c.messages, d.m);
        if (i < 0 && d.m.dir === "in") this.onIncoming(d.m);
        this.changed();
        break;
      }
      case "prog": {
        const m = this.conv(d.conv).messages.find((x) => x.id === d.id);
        if (m?.file) {
          m.file.done = d.done;
          m.file.size = d.size;
          this.onProgress(m);
        }
        break;
      }
      case "status":
        this.status = d.status;
        this.changed();
        break;
      case "people":
        this.mirror = {
          people: d.people,
          labels: d.labels,
          serverId: d.serverId,
          trust: d.trust,
          keys: d.keys,
        };
        this.changed();
        break;
      case "unread":
        this.conv(d.conv).unread = d.n;
        this.changed();
        break;
      case "drop":
        this.conversations.delete(d.conv);
        if (d.conv === PUBLIC) this.conv(PUBLIC);
        this.changed();
        break;
      case "wiped":
        this.conversations.clear();
        this.conv(PUBLIC);
        this.changed();
        break;
    }
  }

  private peopleMsg(): {
    people: Person[];
    labels: Record<string, string>;
    serverId: string;
    trust: Record<string, TrustView>;
    keys: KeysView;
  } {
    const people = this.people();
    const labels: Record<string, string> = {};
    const trust: Record<string, TrustView> = {};
    for (const p of people) {
      labels[p.userId] = p.label;
      const t = this.trustOf(p.userId);
      if (t) trust[p.userId] = t;
    }
    return { people, labels, serverId: this.client?.serverId ?? "", trust, keys: this.keys() };
  }

  /** What to show about `userId`'s key (null when unknown). */
  trustOf(userId: string): TrustView | null {
    if (this.role !== "leader") return this.mirror.trust[userId] ?? null;
    const c = this.client;
    if (!c || userId === PUBLIC || userId === this.me.userId) return null;
    try {
      const t = c.core.trustInfo(userId);
      return {
        trust: t.trust,
        fingerprint: t.fingerprint,
        derived: t.derived,
        verified: t.verified,
        safetyCode: t.safetyCode,
        pending: t.pending,
      };
    } catch {
      return null;
    }
  }

  /** Our server's and the channel's keys. */
  keys(): KeysView {
    if (this.role !== "leader") return this.mirror.keys;
    const c = this.client;
    const pin = c?.core.serverPin;
    const pending = c?.core.serverKeyPending ?? "";
    const ch = c?.core.channel?.creatorPub;
    return {
      server: pin ? pin.fingerprint : "",
      serverPending: pending ? keyFingerprint(pending) : "",
      channel: ch ? keyFingerprint(ch) : "",
    };
  }

  /** Accept a contact's changed key (after comparing the new safety code). */
  trustKey(userId: string): void {
    if (this.role !== "leader") return this.post({ t: "trustKey", id: userId });
    try {
      this.client?.trustKey(userId);
    } catch (e) {
      this.note(userId, `Could not accept the key: ${(e as Error).message}`);
    }
    this.peopleChanged();
    this.changed();
  }

  /** Mark a contact verified (the safety codes matched), or remove the mark. */
  setVerified(userId: string, verified: boolean): void {
    if (this.role !== "leader") return this.post({ t: "setVerified", id: userId, verified });
    try {
      this.client?.setVerified(userId, verified);
    } catch (e) {
      this.note(userId, `Could not change the mark: ${(e as Error).message}`);
    }
    this.peopleChanged();
    this.changed();
  }

  /** Accept the key our server presents now. */
  trustServerKey(): void {
    if (this.role !== "leader") return this.post({ t: "trustServerKey" });
    try {
      this.client?.trustServerKey();
    } catch (e) {
      this.note(PUBLIC, `Could not accept the server's key: ${(e as Error).message}`);
    }
    this.peopleChanged();
    this.changed();
  }

  /** The people changed: tell the other tabs (at most every 200 ms). */
  private peopleChanged(): void {
    if (this.peopleTimer !== undefined) return;
    this.peopleTimer = setTimeout(() => {
      this.peopleTimer = undefined;
      this.post({ t: "people", ...this.peopleMsg() });
    }, 200);
  }

  private setStatus(s: LinkStatus): void {
    this.status = s;
    if (this.role === "leader") this.post({ t: "status", status: s });
    this.changed();
  }

  // ---------------------------------------------------------------- connection (leader)

  /** Stop and close. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.client?.close(1000);
  }

  /** Stop this tab's connection and give up the lock (sign-out). */
  private stopLocal(): void {
    this.stopped = true;
    this.wake?.();
    this.client?.close(1000);
    this.release?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => (this.wake = null, resolve()), ms);
      this.wake = () => (clearTimeout(t), this.wake = null, resolve());
    });
  }

  private async connectFirst(nameInUseTries: number): Promise<void> {
    let delay = 1000;
    let inUse = 0;
    for (let attempt = 1; !this.stopped; attempt++) {
      this.setStatus({ kind: "connecting", attempt });
      try {
        const c = await SocpClient.connect(this.wsUrl, {
          userId: this.me.userId,
          key: this.me.key,
          displayName: this.me.displayName,
          store: this.trustStore,
          maxFileBytes: this.maxFileBytes,
          timeoutMs: 20_000,
          holdFiles: true,
          onChannelKey: this.onChannelKey,
        });
        if (this.stopped) {
          await c.close(1000);
          return;
        }
        this.client = c;
        c.onEvent = (e) => this.onEvent(e);
        for (const e of c.drainBuffered()) this.onEvent(e);
        this.setStatus({ kind: "online" });
        this.peopleChanged();
        for (const m of this.early.splice(0)) this.dispatch(m);
        return;
      } catch (e) {
        if (e instanceof HelloRefused) {
          if (e.code === "NAME_IN_USE" && ++inUse < nameInUseTries) {
            // Taking over from a tab of ours that just closed: its socket may not be closed at the server yet.
            this.setStatus({ kind: "connecting", attempt });
            await this.sleep(1500);
            continue;
          }
          this.setStatus(this.refusal(e.code, e.message));
          return;
        }
        this.setStatus({ kind: "offline", retryAt: Date.now() + delay, reason: (e as Error).message });
        await this.sleep(delay);
        delay = Math.min(delay * 2, MAX_BACKOFF_MS);
      }
    }
  }

  /** How a refused hello is shown: in words, never as the raw code. */
  private refusal(code: string, detail: string): LinkStatus {
    if (/signed in elsewhere|took over/i.test(detail)) return this.takenOverStatus();
    if (code === "NAME_IN_USE" || TAKEN_OVER.test(detail)) {
      return {
        kind: "elsewhere",
        reason: "This identity is connected from another device or browser. " +
          "Messages go there while it is connected.",
      };
    }
    return {
      kind: "refused",
      reason: `The server did not accept this identity (${
        detail.replace(/^[A-Z_]+:\s*/, "") || "no reason given"
      }).`,
    };
  }

  /** Offline: try now instead of at the end of the wait (the button "Retry now"). */
  retryNow(): void {
    if (this.role !== "leader") return this.post({ t: "retry" });
    if (this.client) this.client.retryNow();
    else this.wake?.();
  }

  /** After "signed in elsewhere" or a refusal: connect again (only when the user asks). */
  reconnect(): void {
    if (this.role !== "leader") return this.post({ t: "reconnect" });
    if (this.status.kind !== "elsewhere" && this.status.kind !== "refused") return;
    const old = this.client;
    this.client = null;
    old?.close(1000);
    this.connectFirst(1);
  }

  private changed(): void {
    this.onChange();
  }

  // ---------------------------------------------------------------- the model

  /** The conversation with `id`, created empty if new. */
  conv(id: string): Conversation {
    let c = this.conversations.get(id);
    if (!c) {
      c = { id, messages: [], unread: 0 };
      this.conversations.set(id, c);
    }
    return c;
  }

  /** Show a conversation in this tab (clears its unread count). */
  open(id: string): void {
    this.current = id;
    this.conv(id);
    this.sayTab();
    this.read(id);
    this.changed();
  }

  /** Conversation `id` was read. */
  read(id: string): void {
    const c = this.conv(id);
    if (this.role !== "leader") {
      if (c.unread) this.post({ t: "read", conv: id });
      c.unread = 0;
      return;
    }
    if (!c.unread) return;
    c.unread = 0;
    this.stateDirty = true;
    this.schedule();
    this.post({ t: "unread", conv: id, n: 0 });
    this.changed();
  }

  /** True when the user looks at some tab of ours (the leader knows; a follower says its own). */
  anyTabVisible(): boolean {
    if (this.role !== "leader") return this.visible;
    this.tabs.set(this.tab, { visible: this.visible, current: this.current });
    for (const t of this.tabs.values()) if (t.visible) return true;
    return false;
  }

  /** True when some tab of ours shows `conv` to the user now. */
  private onScreen(conv: string): boolean {
    this.tabs.set(this.tab, { visible: this.visible, current: this.current });
    for (const t of this.tabs.values()) if (t.visible && t.current === conv) return true;
    return false;
  }

  private add(m: ChatMessage): void {
    const c = this.conv(m.conv);
    insertSorted(c.messages, m);
    if (c.messages.length > MAX_PER_CONV) {
      for (const old of c.messages.splice(0, c.messages.length - MAX_PER_CONV)) this.removed.push(old.id);
    }
    if (m.dir === "in") {
      if (!this.onScreen(m.conv)) {
        c.unread++;
        this.stateDirty = true;
        this.post({ t: "unread", conv: m.conv, n: c.unread });
      }
      this.onIncoming(m);
    }
    this.touch(m);
  }

  /** Message `m` is new or changed: store it, tell the other tabs, redraw. */
  private touch(m: ChatMessage): void {
    if (m.dir !== "note") {
      this.dirty.add(m);
      this.schedule();
    }
    this.post({ t: "msg", m });
    this.changed();
  }

  private progressed(m: ChatMessage): void {
    if (m.file) this.post({ t: "prog", id: m.id, conv: m.conv, done: m.file.done, size: m.file.size });
    this.onProgress(m);
  }

  private schedule(): void {
    if (this.flushTimer !== undefined) return;
    this.flushTimer = setTimeout(() => this.flush(), 0);
  }

  /** Write what changed to the encrypted history. */
  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.role !== "leader" || (!this.dirty.size && !this.stateDirty && !this.removed.length)) return;
    const ms = [...this.dirty];
    this.dirty.clear();
    const removed = this.removed.splice(0);
    const state = this.stateDirty ? this.appState() : undefined;
    this.stateDirty = false;
    this.history.save(ms, state, removed).catch((e) =>
      this.note(this.current, `Could not save the history in this browser: ${(e as Error).message}`)
    );
  }

  private appState(): AppState {
    const unread: Record<string, number> = {};
    for (const c of this.conversations.values()) if (c.unread) unread[c.id] = c.unread;
    return { unread, seen: this.seenOrder };
  }

  /** Keep a received file's bytes in the history (evicting the oldest beyond the quota). */
  private keep(m: ChatMessage, bytes: Uint8Array): void {
    this.history.keepFile(m.id, bytes, Date.now()).then(({ kept, evicted }) => {
      if (m.file) m.file.kept = kept;
      this.touch(m);
      for (const id of evicted) {
        for (const c of this.conversations.values()) {
          const e = c.messages.find((x) => x.id === id);
          if (e?.file && e.file.kept) {
            e.file.kept = false;
            e.file.evicted = true;
            this.touch(e);
          }
        }
      }
    }).catch(() => this.note(m.conv, `Could not keep ${m.file?.name ?? "a file"} in this browser.`));
  }

  /** A kept file's bytes (decrypted from the history), when the page has none in memory. */
  async fileBlob(m: ChatMessage): Promise<Blob | null> {
    if (m.file?.blob) return m.file.blob;
    if (!m.file?.kept) return null;
    const bytes = await this.history.file(m.id);
    if (!bytes) return null;
    m.file.blob = new Blob([new Uint8Array(bytes)], { type: "application/octet-stream" });
    return m.file.blob;
  }

  private note(conv: string, text: string, kind?: string): void {
    this.add({ id: this.newId("n"), conv, dir: "note", from: "", fromName: "", text, ts: Date.now(), kind });
  }

  /** Delete a conversation's messages and kept files (in every tab). */
  deleteConversation(id: string): void {
    if (this.role !== "leader") return this.post({ t: "dropConv", conv: id });
    const c = this.conversations.get(id);
    if (!c) return;
    for (const m of c.messages) {
      this.dirty.delete(m);
      if (m.dir !== "note") this.removed.push(m.id);
    }
    this.conversations.delete(id);
    this.conv(PUBLIC);
    this.stateDirty = true;
    this.flush();
    this.post({ t: "drop", conv: id });
    this.changed();
  }

  /** Delete every conversation and kept file (in every tab; the identity stays). */
  async wipeHistory(): Promise<void> {
    if (this.role !== "leader") return this.post({ t: "wipe" });
    this.dirty.clear();
    this.removed.length = 0;
    this.stateDirty = false;
    this.conversations.clear();
    this.conv(PUBLIC);
    await this.history.wipe();
    this.post({ t: "wiped" });
    this.changed();
  }

  /** Sign out: close the connection (in whichever tab holds it), delete the identity, history and key. */
  async signOut(): Promise<void> {
    this.post({ t: "signout" });
    this.stopLocal();
    clearTimeout(this.flushTimer);
    this.dirty.clear();
    await this.db.clear();
    this.post({ t: "signedout" });
  }

  /** Everyone to show: online users across the network, then offline contacts. */
  people(): Person[] {
    if (this.role === "follower" && this.snapshotted) return this.mirror.people;
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

  /** The id of our server ("" before the first connection). */
  get serverId(): string {
    return this.client?.serverId || this.mirror.serverId;
  }

  /** True when `userId` is online now. */
  isOnline(userId: string): boolean {
    if (this.client) return this.client.isOnline(userId);
    return this.mirror.people.some((p) => p.userId === userId && p.online);
  }

  /** A person's label (`name#abcd` when their display name is shared by someone else known). */
  label(userId: string): string {
    if (userId === PUBLIC) return "Public channel";
    if (userId === this.me.userId) return this.me.displayName;
    if (this.client) return this.client.core.labelOf(userId);
    return this.mirror.labels[userId] ?? this.stored.get(userId)?.name ?? userId;
  }

  // ---------------------------------------------------------------- events (leader)

  private onEvent(e: ClientEvent): void {
    switch (e.kind) {
      case "ready":
        this.setStatus({ kind: "online" });
        this.peopleChanged();
        break;
      case "closed":
        if (e.code === 4001 || TAKEN_OVER.test(e.reason)) return this.takenOver();
        if (this.status.kind === "elsewhere" || this.status.kind === "refused") return;
        this.setStatus({ kind: "offline", retryAt: 0, reason: "connection lost" });
        break;
      case "reconnecting":
        if (this.status.kind === "elsewhere") return;
        this.setStatus({
          kind: "offline",
          retryAt: Date.now() + e.inMs,
          reason: e.error?.startsWith("cannot connect") ? "the server cannot be reached" : "connection lost",
        });
        break;
      case "refused":
        this.setStatus(this.refusal(e.code, e.detail));
        break;
      case "contact":
        this.stored.set(e.contact.userId, e.contact);
        this.db.saveContact(e.contact).catch(() => this.note(this.current, "Could not save a contact."));
        this.peopleChanged();
        this.changed();
        break;
      case "joined":
      case "left":
      case "channel":
      case "serverPin":
        this.peopleChanged();
        this.changed();
        break;
      case "keyChanged":
        this.note(
          e.userId,
          `⚠ ${e.label}'s key changed: it was ${e.oldFingerprint}, now ${e.newFingerprint}. ` +
            (e.verified ? "You had verified them: this is a hard stop. " : "") +
            "Messages to them are blocked until you accept the new key; compare the new safety code with them first.",
          "key-changed",
        );
        this.peopleChanged();
        break;
      case "keyReplaced":
      case "keyRejected":
        this.note(e.userId, `⚠ ${e.detail}`, "key-warning");
        this.peopleChanged();
        break;
      case "keyTrusted":
        this.note(e.userId, `You accepted ${e.label}'s new key (${e.fingerprint}).`);
        this.peopleChanged();
        break;
      case "serverKeyChanged":
        this.note(
          PUBLIC,
          `⚠ Your server presents another key: it was ${e.oldFingerprint}, now ${
            e.newFingerprint || "none"
          }. ` +
            "Public channel keys from it are refused until you accept it.",
          "key-changed",
        );
        this.peopleChanged();
        break;
      case "channelKeyChanged":
        this.note(
          PUBLIC,
          `The public channel has a new key: it was ${e.oldFingerprint}, now ${e.newFingerprint}. ` +
            "Messages from here on use the new key.",
          "channel-key",
        );
        this.peopleChanged();
        break;
      case "message":
        this.onMessage(e.message);
        break;
      case "dm":
      case "public": {
        const conv = e.kind === "dm" ? e.from : PUBLIC;
        const key = [...sha256(`${e.kind}|${e.from}|${e.ts}|${e.text}`).subarray(0, 16)]
          .map((b) => b.toString(16).padStart(2, "0")).join("");
        if (this.seen.has(key)) return; // the same message sent again (after a reconnect, or a reload)
        this.seen.add(key);
        this.seenOrder.push(key);
        if (this.seenOrder.length > MAX_SEEN) this.seen.delete(this.seenOrder.shift()!);
        this.stateDirty = true;
        this.add({
          id: this.newId("m"),
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
        // A newer session of ours took over (the server says so, then closes with 4001).
        if (e.code === "NAME_IN_USE" || TAKEN_OVER.test(e.detail)) return this.takenOver();
        // Refusals of our messages and files arrive as `message` / `fileRefused`; say the rest.
        this.note(this.current, `The server said: ${e.detail}`);
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

  /** A newer session of this identity took over: stop here (no reconnect) and say so. */
  private takenOver(): void {
    const c = this.client;
    this.client = null;
    c?.close(1000);
    this.setStatus(this.takenOverStatus());
  }

  private takenOverStatus(): LinkStatus {
    return {
      kind: "elsewhere",
      reason:
        "Signed in elsewhere: this identity connected from another device or browser, which took over. " +
        "Messages go there now.",
    };
  }

  private onMessage(o: OutgoingMessage): void {
    let m = this.outgoing.get(o.id);
    if (!m) {
      if (this.binding && this.binding.text === o.text) m = this.binding;
      else {
        m = {
          id: this.newId("e"),
          conv: o.kind === "public" ? PUBLIC : o.to,
          dir: "out",
          from: this.me.userId,
          fromName: this.me.displayName,
          text: o.text,
          ts: o.ts,
          state: o.state,
        };
        this.add(m);
      }
      this.outgoing.set(o.id, m);
    }
    m.state = o.state;
    if (m.ts !== o.ts) {
      m.ts = o.ts;
      const list = this.conv(m.conv).messages;
      if (list.includes(m)) list.splice(list.indexOf(m), 1);
      insertSorted(list, m);
    }
    m.detail = o.error ?? describe(o);
    this.touch(m);
  }

  /** A new outgoing message of ours in conversation `to`. */
  private mine(prefix: string, to: string, text: string): ChatMessage {
    return {
      id: this.newId(prefix),
      conv: to,
      dir: "out",
      from: this.me.userId,
      fromName: this.me.displayName,
      text,
      ts: Date.now(),
    };
  }

  // ---------------------------------------------------------------- actions

  /** Send a text message to a user id or to the public channel. */
  send(to: string, text: string): void {
    if (this.role !== "leader") return this.post({ t: "send", to, text });
    const msg: ChatMessage = {
      ...this.mine("e", to, text),
      state: "sending",
      detail: "waiting for the connection",
    };
    this.add(msg);
    if (!this.client) {
      this.early.push(msg);
      return;
    }
    this.dispatch(msg);
  }

  /** Hand message `m` to the client core; its `message` events carry the states from here on. */
  private async dispatch(m: ChatMessage): Promise<void> {
    const c = this.client!;
    this.binding = m;
    try {
      const p = m.conv === PUBLIC ? c.all(m.text) : c.tell(m.conv, m.text);
      this.binding = null;
      this.onMessage(await p);
    } catch (e) {
      this.binding = null;
      m.state = "failed";
      m.detail = (e as Error).message;
      this.touch(m);
    }
  }

  /** Send a file to a user id or the public channel; the size is checked before anything is read or sent. */
  sendFile(to: string, file: File): Promise<void> {
    if (this.role !== "leader") return Promise.resolve(this.post({ t: "file", to, file }));
    return this.files.sendFile(to, file);
  }

  /** Accept an offered file: it is decrypted now. */
  accept(m: ChatMessage): void {
    if (this.role !== "leader") return this.post({ t: "accept", id: m.id, conv: m.conv });
    this.files.accept(m);
  }

  /** Decline an offered file: dropped undecrypted. */
  decline(m: ChatMessage): void {
    if (this.role !== "leader") return this.post({ t: "decline", id: m.id, conv: m.conv });
    this.files.decline(m);
  }
}
