/**
 * The terminal client's message history on disk (Deno only), encrypted at rest.
 *
 * Layout: `$SOCP_HOME/history/<name>/` (mode 0700) holds
 *
 * - `key.json` (0600): a random 256-bit history key, RSA-OAEP-wrapped to the user's own public key (only the
 *   unlocked private key, itself sealed under the passphrase in the key file, unwraps it; the key is never
 *   written in the clear);
 * - `history.log` (0600): one line per record, `base64url(iv ‖ AES-256-GCM(json))`, each sealed on its own with a
 *   random 96-bit IV. The JSON holds everything, the conversation id and the original send `ts` too, so the file
 *   shows neither text nor who one talks to; the additional data binds each record to the format and the user
 *   id. A line that does not open (a truncated tail, a corrupt byte, another key) is skipped and dropped at the
 *   next compaction; the good ones are kept.
 *
 * Records are appended in batches by one writer (a burst of messages is one write); each conversation keeps its
 * newest {@linkcode HISTORY_PER_CONVERSATION} messages, and the file is rewritten (temporary file and rename)
 * when it holds twice the lines it needs. The records and their sealing are in history_records.ts.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { PrivateKey } from "../crypto/rsa.ts";
import { socpHome } from "./contacts.ts";
import { type HistoryMessage, type Line, RecordSeal } from "./history_records.ts";

export type { FileRecord, HistoryMessage } from "./history_records.ts";

/** Messages kept per conversation (the oldest go first). */
export const HISTORY_PER_CONVERSATION = 2000;
/** Conversations kept (the least recently active go first). */
export const HISTORY_MAX_CONVERSATIONS = 1000;
/** Messages kept in all (the oldest go first, whatever their conversation): bounds memory and the file. */
export const HISTORY_MAX_MESSAGES = 50_000;

/** A conversation in the list. */
export interface ConversationInfo {
  conv: string;
  label: string;
  count: number;
  unread: number;
  lastTs: number;
}

/** Where the history of the user whose key file is `keyPath` is kept. */
export function historyDir(keyPath: string): string {
  const name = basename(keyPath).replace(/\.json$/, "").replace(/^\.+/, "_") || "default";
  return join(socpHome(), "history", name);
}

/** The per-identity history: in memory for reading, appended to the sealed log for keeping. */
export class HistoryStore {
  private readonly convs = new Map<string, HistoryMessage[]>();
  private readonly byId = new Map<string, HistoryMessage>();
  private readonly readTs = new Map<string, number>();
  private readonly dirtyRead = new Set<string>();
  private queue: Line[] = [];
  private flushing: Promise<void> | null = null;
  private lines = 0;
  private needsNewline = false;
  private compactWanted = false;
  /** Lines that did not open when the log was read. */
  skipped = 0;
  /** Writes done (appends and rewrites): a burst is one. */
  writes = 0;
  /** The last write error, if any (the chat says it once). */
  onError?: (e: Error) => void;

  private constructor(
    readonly dir: string,
    private readonly userId: string,
    private readonly privateKey: PrivateKey,
    private key: RecordSeal,
    readonly perConversation: number,
    readonly maxMessages: number,
  ) {}

  get logPath(): string {
    return join(this.dir, "history.log");
  }

  /**
   * Open (or start) the history in `dir` for `userId`, unwrapping its key with `privateKey`. Throws when a
   * history key exists that this identity cannot open (the file is left as it is).
   */
  static async open(
    dir: string,
    userId: string,
    privateKey: PrivateKey,
    opts: { perConversation?: number; maxMessages?: number } = {},
  ): Promise<HistoryStore> {
    const key = await RecordSeal.open(dir, userId, privateKey);
    const h = new HistoryStore(
      dir,
      userId,
      privateKey,
      key,
      opts.perConversation ?? HISTORY_PER_CONVERSATION,
      opts.maxMessages ?? HISTORY_MAX_MESSAGES,
    );
    await h.load();
    return h;
  }

  private async load(): Promise<void> {
    let text = "";
    try {
      text = await Deno.readTextFile(this.logPath);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    this.needsNewline = text.length > 0 && !text.endsWith("\n");
    const raw = text.split("\n").filter((l) => l.length > 0);
    this.lines = raw.length;
    for (let i = 0; i < raw.length; i += 256) {
      const batch = await Promise.all(raw.slice(i, i + 256).map((l) => this.key.unseal(l.trim())));
      for (const line of batch) {
        if (line) this.apply(line);
        else this.skipped++;
      }
    }
    this.dirtyRead.clear();
    if (this.skipped > 0 || this.lines > 2 * this.liveLines() + 64) this.compactWanted = true;
  }

  /** Fold a record into memory. */
  private apply(line: Line): void {
    if (line.t === "r") {
      if (line.ts > (this.readTs.get(line.conv) ?? -Infinity)) this.readTs.set(line.conv, line.ts);
      this.dirtyRead.add(line.conv);
      return;
    }
    if (line.t === "s") {
      const m = this.byId.get(line.id);
      if (m && m.conv === line.conv) m.state = line.state;
      return;
    }
    const m = line.m;
    const old = this.byId.get(m.id);
    if (old) return void Object.assign(old, m);
    let list = this.convs.get(m.conv);
    if (!list) {
      list = [];
      this.convs.set(m.conv, list);
      this.boundConversations(m.conv);
    }
    let i = list.length;
    while (i > 0 && list[i - 1].ts > m.ts) i--;
    list.splice(i, 0, m);
    this.byId.set(m.id, m);
    while (list.length > this.perConversation) this.byId.delete(list.shift()!.id);
    while (this.byId.size > this.maxMessages) this.dropOldest();
  }

  /** Drop the oldest message kept (by send time), and its conversation when it was the last. */
  private dropOldest(): void {
    let conv: string | undefined;
    let ts = Infinity;
    for (const [c, l] of this.convs) if (l.length && l[0].ts < ts) (conv = c, ts = l[0].ts);
    if (conv === undefined) return;
    const list = this.convs.get(conv)!;
    this.byId.delete(list.shift()!.id);
    if (!list.length) this.dropConversation(conv);
  }

  private boundConversations(keep: string): void {
    if (this.convs.size <= HISTORY_MAX_CONVERSATIONS) return;
    let oldest: string | undefined;
    let oldestTs = Infinity;
    for (const [c, l] of this.convs) {
      const t = l.at(-1)?.ts ?? -Infinity;
      if (c !== keep && t < oldestTs) (oldest = c, oldestTs = t);
    }
    if (oldest !== undefined) this.dropConversation(oldest);
  }

  private dropConversation(conv: string): void {
    for (const m of this.convs.get(conv) ?? []) this.byId.delete(m.id);
    this.convs.delete(conv);
    this.readTs.delete(conv);
    this.dirtyRead.delete(conv);
  }

  private liveLines(): number {
    return this.byId.size + this.readTs.size;
  }

  /** Record a message (ours or theirs). */
  add(m: HistoryMessage): void {
    const line: Line = { t: "m", m: { ...m } };
    this.apply(line);
    this.push(line);
  }

  /** Record a new state of one of our messages (nothing when it is not kept or did not change). */
  setState(id: string, state: string): void {
    const m = this.byId.get(id);
    if (!m || m.state === state) return;
    m.state = state;
    this.push({ t: "s", id, conv: m.conv, state });
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Everything of `conv` up to now is read (written with the next batch). */
  markRead(conv: string): void {
    const last = this.convs.get(conv)?.at(-1)?.ts;
    if (last === undefined || last <= (this.readTs.get(conv) ?? -Infinity)) return;
    this.readTs.set(conv, last);
    this.push({ t: "r", conv, ts: last });
  }

  /** The conversations, most recently active first. */
  conversations(): ConversationInfo[] {
    const out: ConversationInfo[] = [];
    for (const [conv, list] of this.convs) {
      if (!list.length) continue;
      const read = this.readTs.get(conv) ?? -Infinity;
      const last = list[list.length - 1];
      const label = [...list].reverse().find((m) => m.dir === "in")?.fromLabel ?? last.convLabel;
      out.push({
        conv,
        label: conv === "public" ? "all" : label,
        count: list.length,
        unread: list.filter((m) => m.dir === "in" && m.ts > read).length,
        lastTs: last.ts,
      });
    }
    return out.sort((a, b) => b.lastTs - a.lastTs);
  }

  /** The conversation whose label (name, or name#fingerprint) is `name`, if one is kept. */
  findByLabel(name: string): string | undefined {
    const want = name.toLowerCase();
    for (const c of this.conversations()) {
      if (c.label.toLowerCase() === want || c.label.toLowerCase().split("#")[0] === want) return c.conv;
    }
    return undefined;
  }

  /** Messages of `conv` in send order: `count` of them, ending `skip` before the newest. */
  page(conv: string, skip: number, count: number): { messages: HistoryMessage[]; total: number } {
    const list = this.convs.get(conv) ?? [];
    const end = Math.max(0, list.length - skip);
    return { messages: list.slice(Math.max(0, end - count), end), total: list.length };
  }

  private push(line: Line): void {
    this.queue.push(line);
    this.kick();
  }

  private kick(): void {
    if (this.flushing) return;
    this.flushing = this.drain().finally(() => {
      this.flushing = null;
      if (this.queue.length || this.compactWanted) this.kick();
    });
  }

  private async drain(): Promise<void> {
    try {
      if (this.compactWanted) {
        this.compactWanted = false;
        this.queue = []; // the rewrite holds them (they are in memory already)
        await this.rewrite();
      }
      while (this.queue.length) {
        const batch = this.queue;
        this.queue = [];
        const sealed = await Promise.all(batch.map((l) => this.key.seal(l)));
        const text = (this.needsNewline ? "\n" : "") + sealed.join("\n") + "\n";
        await Deno.writeTextFile(this.logPath, text, { append: true, mode: 0o600 });
        this.needsNewline = false;
        this.writes++;
        this.lines += batch.length;
        if (this.lines > 2 * this.liveLines() + 64) {
          this.queue = [];
          await this.rewrite();
        }
      }
    } catch (e) {
      this.onError?.(e as Error);
    }
  }

  /** Write the whole history again from memory (temporary file and rename). */
  private async rewrite(): Promise<void> {
    const lines: Line[] = [];
    for (const list of this.convs.values()) for (const m of list) lines.push({ t: "m", m });
    for (const [conv, ts] of this.readTs) lines.push({ t: "r", conv, ts });
    const sealed: string[] = [];
    for (let i = 0; i < lines.length; i += 256) {
      sealed.push(...await Promise.all(lines.slice(i, i + 256).map((l) => this.key.seal(l))));
    }
    const tmp = `${this.logPath}.${crypto.randomUUID()}.tmp`;
    await Deno.writeTextFile(tmp, sealed.length ? sealed.join("\n") + "\n" : "", { mode: 0o600 });
    await Deno.rename(tmp, this.logPath);
    this.lines = sealed.length;
    this.needsNewline = false;
    this.writes++;
  }

  /** Wait until every record so far is on disk. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** Delete one conversation's history (the file is rewritten without it). */
  async forget(conv: string): Promise<number> {
    const n = this.convs.get(conv)?.length ?? 0;
    this.dropConversation(conv);
    this.compactWanted = true;
    this.kick();
    await this.flush();
    return n;
  }

  /** Delete all history: the log and its key (a copy of the old log can no longer be opened); a new key follows. */
  async forgetAll(): Promise<void> {
    await this.flush();
    this.convs.clear();
    this.byId.clear();
    this.readTs.clear();
    this.dirtyRead.clear();
    this.queue = [];
    await Deno.remove(this.logPath).catch(() => {});
    await Deno.remove(join(this.dir, "key.json")).catch(() => {});
    this.lines = 0;
    this.needsNewline = false;
    this.key = await RecordSeal.open(this.dir, this.userId, this.privateKey);
  }
}
