/**
 * The leader tab's binding of the conversations to the encrypted history (history.ts): what changed is written
 * in one batch per turn of the event loop (messages, removals, and the state: unread counts); received files are kept within the history's quota; a reload loads everything again, in send order,
 * and says which transfers the closed page cut off.
 *
 * @module
 */
import { type ChatMessage, type Conversation, insertSorted } from "./model.ts";

/** The app state kept beside the messages (history.ts `AppState`). */
export interface AppState {
  /** Unread counts by conversation. */
  unread: Record<string, number>;
}

/**
 * The encrypted history the binding writes to (history.ts `History`; named here by shape so this module loads
 * without the DOM's types, for unit tests).
 */
export interface HistoryStore {
  load(): Promise<{ messages: ChatMessage[]; state: AppState }>;
  save(messages: ChatMessage[], state?: AppState, removed?: string[]): Promise<void>;
  keepFile(id: string, bytes: Uint8Array, at: number): Promise<{ kept: boolean; evicted: string[] }>;
  file(id: string): Promise<Uint8Array | null>;
  wipe(): Promise<void>;
}

/** What the binding needs from the session. */
export interface BindingHost {
  /** This tab holds the connection (only the leader writes). */
  leading(): boolean;
  readonly conversations: Map<string, Conversation>;
  /** The conversation with `id`, created empty if new. */
  conv(id: string): Conversation;
  /** Message `m` changed: store, share and redraw. */
  touch(m: ChatMessage): void;
  /** Add a note to conversation `conv` (or, without one, to the conversation on screen). */
  note(conv: string | null, text: string): void;
}

/** The conversations as kept in the history. */
export class HistoryBinding {
  private readonly dirty = new Set<ChatMessage>();
  private readonly removed: string[] = [];
  private stateDirty = false;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** The writes so far, one after another: true once the last is on disk, false when it failed (and said). */
  private writing: Promise<boolean> = Promise.resolve(true);
  /** Told the outcome of the next write (false: failed, or never written). */
  private readonly waiting: ((ok: boolean) => void)[] = [];

  /** The binding of `host`'s conversations to `history`. */
  constructor(private readonly history: HistoryStore, private readonly host: BindingHost) {}

  /** Load the history into the conversations. */
  async load(): Promise<void> {
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
      insertSorted(this.host.conv(m.conv).messages, m);
    }
    for (const [conv, n] of Object.entries(state.unread)) {
      if (typeof n === "number" && n > 0) this.host.conv(conv).unread = n;
    }
  }

  /** Message `m` is new or changed (notes are not kept). */
  changed(m: ChatMessage): void {
    if (m.dir === "note") return;
    this.dirty.add(m);
    this.schedule();
  }

  /** The unread counts changed. */
  stateChanged(): void {
    this.stateDirty = true;
    this.schedule();
  }

  /** Messages `ids` left their conversation (beyond its length). */
  dropped(ids: string[]): void {
    this.removed.push(...ids);
  }

  private schedule(): void {
    if (this.flushTimer !== undefined) return;
    this.flushTimer = setTimeout(() => this.flush(), 0);
  }

  /**
   * Settles once everything changed so far is written: true when it is on disk, false when the write failed (the
   * user is told), or will not happen (this tab does not lead, or writes nothing more). The leader confirms a
   * follower's hand-over only after true (handovers.ts).
   */
  written(): Promise<boolean> {
    if (!this.dirty.size && !this.stateDirty && !this.removed.length) return this.writing;
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Write what changed to the encrypted history. */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (!this.host.leading()) return this.settle(false);
    if (!this.dirty.size && !this.stateDirty && !this.removed.length) {
      const done = this.waiting.splice(0);
      if (done.length) void this.writing.then((ok) => done.forEach((f) => f(ok)));
      return;
    }
    const ms = [...this.dirty];
    this.dirty.clear();
    const removed = this.removed.splice(0);
    const state = this.stateDirty ? this.appState() : undefined;
    this.stateDirty = false;
    const done = this.waiting.splice(0);
    // After the last write: History.save seals before its transaction, so two at once could commit out of order
    // (an older copy of a message over a newer one); chained, each commits in turn, and `writing` covers them all.
    this.writing = this.writing.then(() => this.history.save(ms, state, removed)).then(() => true, (e) => {
      this.host.note(null, `Could not save the history in this browser: ${(e as Error).message}`);
      return false;
    });
    void this.writing.then((ok) => done.forEach((f) => f(ok)));
  }

  /** Tell whoever waits for the next write that it will not be on disk. */
  private settle(ok: boolean): void {
    for (const f of this.waiting.splice(0)) f(ok);
  }

  /** Write nothing more (sign-out). */
  stop(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.dirty.clear();
    this.settle(false);
  }

  private appState(): AppState {
    const unread: Record<string, number> = {};
    for (const c of this.host.conversations.values()) if (c.unread) unread[c.id] = c.unread;
    return { unread };
  }

  /** Keep a received file's bytes in the history (evicting the oldest beyond the quota). */
  keepFile(m: ChatMessage, bytes: Uint8Array): void {
    this.history.keepFile(m.id, bytes, Date.now()).then(({ kept, evicted }) => {
      if (m.file) m.file.kept = kept;
      this.host.touch(m);
      for (const id of evicted) {
        for (const c of this.host.conversations.values()) {
          const e = c.messages.find((x) => x.id === id);
          if (e?.file && e.file.kept) {
            e.file.kept = false;
            e.file.evicted = true;
            this.host.touch(e);
          }
        }
      }
    }).catch(() => this.host.note(m.conv, `Could not keep ${m.file?.name ?? "a file"} in this browser.`));
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

  /** Delete conversation `c`'s messages and kept files now. */
  deleteConversation(c: Conversation): void {
    for (const m of c.messages) {
      this.dirty.delete(m);
      if (m.dir !== "note") this.removed.push(m.id);
    }
    this.stateDirty = true;
    this.flush();
  }

  /** Delete every conversation and kept file. */
  async wipe(): Promise<void> {
    this.dirty.clear();
    this.removed.length = 0;
    this.stateDirty = false;
    this.settle(false);
    await this.history.wipe();
  }
}
