/// <reference lib="dom" />
/**
 * Tab leadership: one connection per identity and browser. Every tab of the app runs a Session; one of them,
 * the *leader* (it holds the Web Lock `socp-tab-<user id>`), owns the client and the history; the others are
 * *followers*: they ask the leader (BroadcastChannel `socp-tab-<user id>`) for a snapshot, mirror every change
 * it announces, and hand it what their user does (send, accept a file, mark read). When the leader tab closes,
 * the lock passes to a follower, which connects in its place (and says so: `lead`).
 *
 * **Hand-overs are confirmed.** A message or file written in a follower goes to the leader as `send` under an
 * id and time the follower chose, and the follower keeps it (handovers.ts, handover_queue.ts: bounded) until
 * the leader says `took`. The leader takes an id once: it adds the message, waits until it is written to the
 * shared history on disk, says `took`, and only then hands it to the client core. Without `took` the follower hands it again at a deadline
 * (the same id, so a leader that got it twice sends it once), at once to a new leader, and sends it itself once
 * it leads; a leader tab closing as the hand-over arrives loses nothing.
 *
 * This module holds the messages between tabs, the election, the leader's view of which tab shows what, and
 * how a follower applies what the leader says ({@linkcode applyFromLeader}) and the leader what a follower asks
 * ({@linkcode applyToLeader}).
 *
 * @module
 */
import {
  type ChatMessage,
  type Conversation,
  insertSorted,
  type LinkStatus,
  type PeopleSnapshot,
  PUBLIC,
} from "./model.ts";

/** What the leader tab tells the others. */
export type FromLeader =
  | ({ t: "snap"; convs: Conversation[]; status: LinkStatus } & PeopleSnapshot)
  | { t: "msg"; m: ChatMessage }
  | { t: "prog"; id: string; conv: string; done: number; size: number }
  | { t: "status"; status: LinkStatus }
  | ({ t: "people" } & PeopleSnapshot)
  | { t: "unread"; conv: string; n: number }
  | { t: "drop"; conv: string }
  | { t: "wiped" }
  /** The hand-over `id` is taken (in the history on disk, or beyond "sending"): the follower forgets it. */
  | { t: "took"; id: string }
  /** Tab `tab` leads now (a follower hands it what it keeps). */
  | { t: "lead"; tab: string };

/** A message or file written in a follower tab, handed to the leader under the id and time the follower chose. */
export type Handed =
  | { kind: "text"; id: string; ts: number; to: string; text: string }
  | { kind: "file"; id: string; ts: number; to: string; file: File };

/** What the other tabs ask the leader (or tell everyone). */
export type ToLeader =
  | { t: "hello" }
  | { t: "send"; h: Handed }
  /** (The shape of a file hand-over before they were confirmed: taken, see `olderHanded`.) */
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

/** What one tab shows. */
interface TabView {
  visible: boolean;
  current: string;
}

/** This tab's end of the channel between the tabs of one identity, and the election of the leader. */
export class Tabs {
  /** This tab's id. */
  readonly id = crypto.randomUUID();
  private readonly chan: BroadcastChannel | null;
  /** The leader's view of the tabs: which conversation each shows, and whether it is visible. */
  private readonly shown = new Map<string, TabView>();
  private release: (() => void) | null = null;

  /** The channel of `userId`'s tabs; `onMessage` gets what the other tabs post. */
  constructor(private readonly userId: string, onMessage: (d: FromLeader | ToLeader) => void) {
    this.chan = typeof BroadcastChannel === "function" ? new BroadcastChannel(`socp-tab-${userId}`) : null;
    if (this.chan) this.chan.onmessage = (e) => onMessage(e.data);
  }

  /** Tell the other tabs. */
  post(msg: FromLeader | ToLeader): void {
    try {
      this.chan?.postMessage(msg);
    } catch { /* closed */ }
  }

  /**
   * Take the lock if free (`lead(false)`), else `follow()` and queue for it (`lead(true)` once it passes to us,
   * unless `stopped()` by then). Without Web Locks or BroadcastChannel every tab leads.
   */
  elect(lead: (handover: boolean) => void, follow: () => void, stopped: () => boolean): void {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (!locks || !this.chan) return lead(false);
    const name = `socp-tab-${this.userId}`;
    const hold = () => new Promise<void>((resolve) => (this.release = resolve));
    locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock) {
        lead(false);
        return hold();
      }
      follow();
      locks.request(name, () => {
        if (stopped()) return;
        lead(true);
        return hold();
      }).catch(() => {});
      return undefined;
    }).catch(() => lead(false));
  }

  /** Give up the lock (sign-out). */
  resign(): void {
    this.release?.();
  }

  /** Follower: ask for the leader's state every second until `answered()` (the leader may still be loading). */
  askLeader(answered: () => boolean): void {
    let tries = 0;
    const ask = () => {
      if (answered() || tries++ > 60) return;
      this.post({ t: "hello" });
      setTimeout(ask, 1000);
    };
    ask();
  }

  /** Leader: tab `tab` shows `view` (or closed: `null`). */
  see(tab: string, view: TabView | null): void {
    if (view) this.shown.set(tab, view);
    else this.shown.delete(tab);
  }

  /** Leader: true when the user looks at some tab of ours. */
  anyVisible(): boolean {
    for (const t of this.shown.values()) if (t.visible) return true;
    return false;
  }

  /** Leader: true when some tab of ours shows `conv` to the user now. */
  showing(conv: string): boolean {
    for (const t of this.shown.values()) if (t.visible && t.current === conv) return true;
    return false;
  }
}

/** What the leader does for the tabs that follow it (the session's actions, run in the leader). */
export interface Leader {
  snapshot(): FromLeader;
  /** Take a follower's hand-over (once per id) and say `took` when it is safe. */
  take(h: Handed): void;
  read(conv: string): void;
  conv(id: string): Conversation;
  accept(m: ChatMessage): void;
  decline(m: ChatMessage): void;
  retryNow(): void;
  reconnect(): void;
  deleteConversation(conv: string): void;
  wipeHistory(): void;
  trustKey(userId: string): void;
  setVerified(userId: string, verified: boolean): void;
  trustServerKey(): void;
}

/** A hand-over as a tab of ours posts it (the channel is same-origin; this guards against our own older versions). */
function validHanded(h: Handed | undefined): h is Handed {
  if (!h || typeof h.id !== "string" || typeof h.to !== "string" || !Number.isFinite(h.ts)) return false;
  return h.kind === "text" ? typeof h.text === "string" : h.kind === "file" && h.file instanceof Blob;
}

/**
 * A hand-over from a tab still running the app as it was before hand-overs were confirmed (`send` with `to` and
 * `text`, `file` with `to` and `file`): taken under a fresh id (that tab keeps nothing to hand again).
 */
function olderHanded(d: { t: string; to?: unknown; text?: unknown; file?: unknown }): Handed | undefined {
  if (typeof d.to !== "string") return undefined;
  const id = `${d.t === "file" ? "o" : "e"}-${crypto.randomUUID()}`;
  if (d.t === "send" && typeof d.text === "string") {
    return { kind: "text", id, ts: Date.now(), to: d.to, text: d.text };
  }
  if (d.t === "file" && d.file instanceof File) {
    return { kind: "file", id, ts: Date.now(), to: d.to, file: d.file };
  }
}

/** The leader carries out what follower tab asked. */
export function applyToLeader(s: Leader, tabs: Tabs, d: ToLeader): void {
  switch (d.t) {
    case "hello":
      return tabs.post(s.snapshot());
    case "send":
    case "file": {
      const h = d.t === "send" && validHanded(d.h) ? d.h : olderHanded(d);
      return h ? s.take(h) : undefined;
    }
    case "read":
      return s.read(d.conv);
    case "tab":
      tabs.see(d.tab, { visible: d.visible, current: d.current });
      if (d.visible) s.read(d.current);
      return;
    case "bye":
      return tabs.see(d.tab, null);
    case "accept":
    case "decline": {
      const m = s.conv(d.conv).messages.find((x) => x.id === d.id);
      if (m) d.t === "accept" ? s.accept(m) : s.decline(m);
      return;
    }
    case "retry":
      return s.retryNow();
    case "reconnect":
      return s.reconnect();
    case "dropConv":
      return s.deleteConversation(d.conv);
    case "wipe":
      return s.wipeHistory();
    case "trustKey":
      return s.trustKey(d.id);
    case "setVerified":
      return s.setVerified(d.id, d.verified);
    case "trustServerKey":
      return s.trustServerKey();
  }
}

/** What a follower tab mirrors from the leader. */
export interface Follower {
  readonly conversations: Map<string, Conversation>;
  conv(id: string): Conversation;
  status: LinkStatus;
  /** What the leader said about people and keys (null before its snapshot). */
  mirror: PeopleSnapshot | null;
  sayTab(): void;
  changed(): void;
  onIncoming(m: ChatMessage): void;
  onProgress(m: ChatMessage): void;
}

/** The people part of a leader's message. */
function peopleOf(d: PeopleSnapshot): PeopleSnapshot {
  return { people: d.people, labels: d.labels, serverId: d.serverId, trust: d.trust, keys: d.keys };
}

/** A follower applies what the leader said. */
export function applyFromLeader(s: Follower, d: FromLeader): void {
  switch (d.t) {
    case "snap":
      s.conversations.clear();
      for (const c of d.convs) s.conversations.set(c.id, c);
      s.conv(PUBLIC);
      s.status = d.status;
      s.mirror = peopleOf(d);
      s.sayTab();
      break;
    case "msg": {
      const c = s.conv(d.m.conv);
      const i = c.messages.findIndex((x) => x.id === d.m.id);
      if (i >= 0) c.messages.splice(i, 1);
      insertSorted(c.messages, d.m);
      if (i < 0 && d.m.dir === "in") s.onIncoming(d.m);
      break;
    }
    case "prog": {
      const m = s.conv(d.conv).messages.find((x) => x.id === d.id);
      if (m?.file) {
        m.file.done = d.done;
        m.file.size = d.size;
        s.onProgress(m);
      }
      return;
    }
    case "status":
      s.status = d.status;
      break;
    case "people":
      s.mirror = peopleOf(d);
      break;
    case "unread":
      s.conv(d.conv).unread = d.n;
      break;
    case "drop":
      s.conversations.delete(d.conv);
      if (d.conv === PUBLIC) s.conv(PUBLIC);
      break;
    case "wiped":
      s.conversations.clear();
      s.conv(PUBLIC);
      break;
    case "took":
    case "lead":
      return; // the session's hand-overs (handovers.ts)
  }
  s.changed();
}
