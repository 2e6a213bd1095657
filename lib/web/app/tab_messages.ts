/**
 * The messages between the tabs of one identity (tabs.ts holds the channel and the election) and how each side
 * applies them: a follower what the leader says ({@linkcode applyFromLeader}), the leader what a follower asks
 * ({@linkcode applyToLeader}). No DOM here: unit tests load it without the browser's types.
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

/**
 * The version of these messages a leader announces (`v` in `snap` and `lead`): 2 since hand-overs are confirmed.
 * A leader that says none runs the app as it was before: a follower hands it the older form (handovers.ts).
 */
export const TABS_VERSION = 2;

/** What the leader tab tells the others. */
export type FromLeader =
  | ({ t: "snap"; convs: Conversation[]; status: LinkStatus; v?: number } & PeopleSnapshot)
  | { t: "msg"; m: ChatMessage }
  | { t: "prog"; id: string; conv: string; done: number; size: number }
  | { t: "status"; status: LinkStatus }
  | ({ t: "people" } & PeopleSnapshot)
  | { t: "unread"; conv: string; n: number }
  | { t: "drop"; conv: string }
  | { t: "wiped" }
  /**
   * The hand-over `id` is taken (a text in the history on disk, or anything beyond "sending"): the follower
   * forgets it. A file still sending is never `took` (its bytes are only in the leader's page): its `msg` beyond
   * "sending" confirms it.
   */
  | { t: "took"; id: string }
  /** Tab `tab` leads now (a follower hands it what it keeps). */
  | { t: "lead"; tab: string; v?: number };

/** A message or file written in a follower tab, handed to the leader under the id and time the follower chose. */
export type Handed =
  | { kind: "text"; id: string; ts: number; to: string; text: string }
  | { kind: "file"; id: string; ts: number; to: string; file: File };

/** What the other tabs ask the leader (or tell everyone). */
export type ToLeader =
  | { t: "hello" }
  | { t: "send"; h: Handed }
  /**
   * (The shapes of hand-overs before they were confirmed: taken under a fresh id, see `olderHanded`; a follower
   * posts them to a leader that announced no version.)
   */
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

/** What one tab shows. */
export interface TabView {
  visible: boolean;
  current: string;
}

/** The leader's end of the channel, as {@linkcode applyToLeader} uses it (tabs.ts `Tabs`). */
export interface TabChannel {
  /** Tell the other tabs. */
  post(msg: FromLeader | ToLeader): void;
  /** Record what tab `tab` shows (`null`: it closed). */
  see(tab: string, view: TabView | null): void;
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

/** Most characters in one text message (the composer's limit, main.ts). */
export const MAX_TEXT_CHARS = 4000;

/** How far a hand-over's time may be from the leader's clock (the tabs share one machine's clock). */
const MAX_SKEW_MS = 24 * 60 * 60 * 1000;

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
/** A hand-over id as our tabs make it (conversations.ts `newId`: "e" for a text, "o" for a file, then a UUID). */
const HANDED_ID = { text: new RegExp(`^e-${UUID}$`), file: new RegExp(`^o-${UUID}$`) };
const USER_ID = new RegExp(`^${UUID}$`, "i");

/** A conversation a message of ours may go to: the public channel or a user id. */
function validTarget(to: unknown): to is string {
  return typeof to === "string" && (to === PUBLIC || USER_ID.test(to));
}

function validText(text: unknown): text is string {
  return typeof text === "string" && text.length > 0 && text.length <= MAX_TEXT_CHARS;
}

/**
 * A hand-over as a tab of ours posts it (the channel is same-origin, but a tab on another version, or a page
 * script, may post anything): every field checked and bounded, so that taking it cannot throw.
 */
export function validHanded(h: unknown, now: number): h is Handed {
  if (!h || typeof h !== "object") return false;
  const { kind, id, ts, to } = h as Record<string, unknown>;
  if (kind !== "text" && kind !== "file") return false;
  if (typeof id !== "string" || !HANDED_ID[kind].test(id) || !validTarget(to)) return false;
  if (typeof ts !== "number" || !Number.isFinite(ts) || Math.abs(ts - now) > MAX_SKEW_MS) return false;
  return kind === "text"
    ? validText((h as { text?: unknown }).text)
    : (h as { file?: unknown }).file instanceof File;
}

/**
 * A hand-over from a tab still running the app as it was before hand-overs were confirmed (`send` with `to` and
 * `text`, `file` with `to` and `file`): taken under a fresh id (that tab keeps nothing to hand again).
 */
function olderHanded(
  d: { t: string; to?: unknown; text?: unknown; file?: unknown },
  now: number,
): Handed | undefined {
  if (!validTarget(d.to)) return undefined;
  const id = `${d.t === "file" ? "o" : "e"}-${crypto.randomUUID()}`;
  if (d.t === "send" && validText(d.text)) {
    return { kind: "text", id, ts: now, to: d.to, text: d.text };
  }
  if (d.t === "file" && d.file instanceof File) {
    return { kind: "file", id, ts: now, to: d.to, file: d.file };
  }
}

/** The leader carries out what follower tab asked (`now`: the leader's clock, for a hand-over's time). */
export function applyToLeader(s: Leader, tabs: TabChannel, d: ToLeader, now: number = Date.now()): void {
  switch (d.t) {
    case "hello":
      return tabs.post(s.snapshot());
    case "send":
    case "file": {
      const h = d.t === "send" && "h" in d ? (validHanded(d.h, now) ? d.h : undefined) : olderHanded(d, now);
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
