/**
 * The conversations the view shows: messages in send order (each message's own `ts`), at most
 * {@linkcode MAX_PER_CONV} per conversation, unread counts (a message counts as unread unless some tab of ours
 * shows its conversation to the user), and notes. Each change is kept in the history (the leader's) and told
 * to the other tabs.
 *
 * @module
 */
import type { ClientEvent } from "../../client/client.ts";
import { sanitizeFileName } from "../../client/filenames.ts";
import { type ChatMessage, type Conversation, insertSorted, PUBLIC } from "./model.ts";
import type { FromLeader, Handed } from "./tab_messages.ts";

/** Messages kept per conversation (older ones leave the history too). */
export const MAX_PER_CONV = 2000;

/**
 * What the conversations write to the history (history_binding.ts `HistoryBinding`; named here by shape so this
 * module loads without the DOM's types, for unit tests).
 */
export interface SavedHistory {
  changed(m: ChatMessage): void;
  stateChanged(): void;
  dropped(ids: string[]): void;
  deleteConversation(c: Conversation): void;
  wipe(): Promise<void>;
}

/** What the conversations need from the session. */
export interface ConversationsHost {
  /** Who we are (the session's identity). */
  readonly me: { readonly userId: string; readonly displayName: string };
  /** The history binding (the leader writes through it). */
  saved(): SavedHistory;
  /** Tell the other tabs. */
  post(msg: FromLeader): void;
  /** True when some tab of ours shows `conv` to the user now. */
  showing(conv: string): boolean;
  /** A message arrived (the view notifies while hidden). */
  incoming(m: ChatMessage): void;
  /** A file transfer moved on (the view moves its bar). */
  progress(m: ChatMessage): void;
  /** Redraw. */
  changed(): void;
}

/** The conversations of one tab. */
export class Conversations {
  /** The conversations by id (a user id, or {@linkcode PUBLIC}). */
  readonly all = new Map<string, Conversation>();

  /** The conversations of `host` (the public channel's is always there). */
  constructor(private readonly host: ConversationsHost) {
    this.conv(PUBLIC);
  }

  /** The conversation with `id`, created empty if new. */
  conv(id: string): Conversation {
    let c = this.all.get(id);
    if (!c) {
      c = { id, messages: [], unread: 0 };
      this.all.set(id, c);
    }
    return c;
  }

  /** A fresh message id starting with `prefix`. */
  newId(prefix: string): string {
    return `${prefix}-${crypto.randomUUID()}`;
  }

  /** A new outgoing message of ours in conversation `to`. */
  mine(prefix: string, to: string, text: string): ChatMessage {
    return this.ours(this.newId(prefix), to, text, Date.now());
  }

  /** The message of ours a hand-over between tabs stands for (its id and time are the hand-over's). */
  handed(h: Handed): ChatMessage {
    const m = this.ours(h.id, h.to, h.kind === "text" ? h.text : "", h.ts);
    m.state = "sending";
    m.detail = "waiting for the tab that holds the connection";
    if (h.kind === "file") {
      m.file = {
        fileId: "",
        name: sanitizeFileName(h.file.name),
        size: h.file.size,
        done: 0,
        phase: "sending",
      };
    }
    return m;
  }

  /** Our message `id` in conversation `to`. */
  private ours(id: string, to: string, text: string, ts: number): ChatMessage {
    const { userId, displayName } = this.host.me;
    return { id, conv: to, dir: "out", from: userId, fromName: displayName, text, ts };
  }

  /** Message `id` of conversation `conv`, if there. */
  find(conv: string, id: string): ChatMessage | undefined {
    return this.all.get(conv)?.messages.find((m) => m.id === id);
  }

  /** Show `m` in this tab only (a follower's message not taken by the leader yet; not stored, not told). */
  showHere(m: ChatMessage): void {
    if (this.find(m.conv, m.id)) return;
    insertSorted(this.conv(m.conv).messages, m);
    this.host.changed();
  }

  /** Our text messages not sent yet, oldest first. */
  waiting(): ChatMessage[] {
    const out = [...this.all.values()].flatMap((c) =>
      c.messages.filter((m) => m.dir === "out" && !m.file && m.state === "sending")
    );
    return out.sort((a, b) => a.ts - b.ts);
  }

  /** Add a message to its conversation (an incoming one counts as unread unless a tab shows it). */
  add(m: ChatMessage): void {
    const c = this.conv(m.conv);
    insertSorted(c.messages, m);
    if (c.messages.length > MAX_PER_CONV) {
      this.host.saved().dropped(c.messages.splice(0, c.messages.length - MAX_PER_CONV).map((old) => old.id));
    }
    if (m.dir === "in") {
      if (!this.host.showing(m.conv)) {
        c.unread++;
        this.host.saved().stateChanged();
        this.host.post({ t: "unread", conv: m.conv, n: c.unread });
      }
      this.host.incoming(m);
    }
    this.touch(m);
  }

  /**
   * A DM or public message arrived. The client core reports each message once (its store keeps what was shown,
   * across reloads: PROFILE §16), so a copy sent again after a reconnect never gets here.
   */
  received(e: Extract<ClientEvent, { kind: "dm" | "public" }>): void {
    const { from, fromName, text, ts, verified, warning, unencrypted } = e;
    const conv = e.kind === "dm" ? e.from : PUBLIC;
    this.add({
      id: this.newId("m"),
      conv,
      dir: "in",
      from,
      fromName,
      text,
      ts,
      verified,
      warning,
      unencrypted,
    });
  }

  /** Message `m` is new or changed: store it, tell the other tabs, redraw. */
  touch(m: ChatMessage): void {
    this.host.saved().changed(m);
    this.host.post({ t: "msg", m });
    this.host.changed();
  }

  /** A transfer moved on: tell the other tabs, move its bar. */
  progressed(m: ChatMessage): void {
    if (m.file) this.host.post({ t: "prog", id: m.id, conv: m.conv, done: m.file.done, size: m.file.size });
    this.host.progress(m);
  }

  /** A note (not kept in the history) in conversation `conv`. */
  note(conv: string, text: string, kind?: string): void {
    this.add({ id: this.newId("n"), conv, dir: "note", from: "", fromName: "", text, ts: Date.now(), kind });
  }

  /** Conversation `id` was read (the leader's). */
  read(id: string): void {
    const c = this.conv(id);
    if (!c.unread) return;
    c.unread = 0;
    this.host.saved().stateChanged();
    this.host.post({ t: "unread", conv: id, n: 0 });
    this.host.changed();
  }

  /** Delete a conversation's messages and kept files (the leader's). */
  delete(id: string): void {
    const c = this.all.get(id);
    if (!c) return;
    this.all.delete(id);
    this.conv(PUBLIC);
    this.host.saved().deleteConversation(c);
    this.host.post({ t: "drop", conv: id });
    this.host.changed();
  }

  /** Delete every conversation and kept file (the leader's). */
  async wipe(): Promise<void> {
    this.all.clear();
    this.conv(PUBLIC);
    await this.host.saved().wipe();
    this.host.post({ t: "wiped" });
    this.host.changed();
  }
}
