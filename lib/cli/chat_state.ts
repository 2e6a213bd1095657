/**
 * The terminal chat's state between the lines it reads and the events it shows: the connection, the current
 * conversation and how much of its history is on screen (for /more), what is kept in the history, and why the
 * chat must end.
 *
 * @module
 */
import type { OutgoingMessage, SocpClient } from "../client/client.ts";
import type { UserIdentity } from "../client/keyfile.ts";
import type { HistoryMessage, HistoryStore } from "./history.ts";
import { historyLine, own, type Safe, type Screen, term } from "./screen.ts";

/** Messages shown by /open and /more at a time. */
const PAGE = 20;

/** A conversation: a user's id and label, or "public" and "all". */
export interface Current {
  to: string;
  label: string;
}

/** One running terminal chat. */
export class ChatState {
  /** The conversation plain text goes to (the last /tell, /all or /open). */
  current: Current | null = null;
  /** How many of the newest messages of the current conversation are shown already (for /more). */
  shownBack = 0;
  /** The connection dropped (said once; "reconnected" is said when it is back). */
  lost = false;
  /** /quit was asked (a close is not a lost connection then). */
  quitting = false;
  /** Our messages written while the connection was down (their echo says so). */
  readonly lostAt = new Set<string>();
  /** Why the chat must end (a refusal), said on leaving. */
  failure: Safe | null = null;
  /** Resolves once the chat must end. */
  readonly failed = Promise.withResolvers<void>();

  /** The chat of `me` over `client` on `screen`; `history` null when it is off. */
  constructor(
    readonly screen: Screen,
    readonly client: SocpClient,
    readonly me: UserIdentity,
    readonly history: HistoryStore | null,
    readonly server: string,
  ) {}

  /** Print a line. */
  say(line: Safe): void {
    this.screen.say(line);
  }

  /** A user's label (`name#abcd` when their display name is shared). */
  label(userId: string): string {
    return this.client.core.labelOf(userId);
  }

  /** End the chat (after the current line) with `why`. */
  fail(why: Safe): void {
    this.failure = why;
    this.failed.resolve();
  }

  /** Talk to `c` from now on (its history is shown by {@linkcode switchTo} or as it arrives). */
  talkTo(c: Current): void {
    this.current = c;
    this.shownBack = 0;
    this.screen.prompt = term`[${c.label}]> `;
  }

  /** Keep a received message or file in the history (read at once when its conversation is the current one). */
  keep(m: Omit<HistoryMessage, "id" | "dir" | "state">): void {
    const history = this.history;
    if (!history) return;
    history.add({ ...m, id: crypto.randomUUID(), dir: "in", state: "received" });
    if (this.current && this.current.to === m.conv) {
      history.markRead(m.conv);
      this.shownBack++; // shown live: /more continues before what was paged already
    }
  }

  /** Keep one of our messages, or its new state. */
  keepOurs(m: Pick<OutgoingMessage, "id" | "kind" | "to" | "toLabel" | "text" | "ts" | "state">): void {
    const history = this.history;
    if (!history) return;
    if (history.has(m.id)) return history.setState(m.id, m.state);
    const conv = m.kind === "public" ? "public" : m.to;
    if (this.current && this.current.to === conv) this.shownBack++;
    history.add({
      id: m.id,
      conv,
      convLabel: m.kind === "public" ? "all" : m.toLabel,
      ts: m.ts,
      dir: "out",
      from: this.me.userId,
      fromLabel: "you",
      text: m.text,
      verified: true,
      state: m.state,
    });
  }

  /** Show the page of the current conversation before the `shownBack` newest (`first`: on switching to it). */
  showPage(first: boolean): void {
    const { history, current } = this;
    if (!history || !current) return;
    const conv = current.to;
    const { messages, total } = history.page(conv, this.shownBack, PAGE);
    const name = conv === "public" ? "the public channel" : current.label;
    if (total === 0) return this.say(term`* no history with ${name} yet`);
    if (!messages.length) return this.say(term`* that is all: ${total} message(s) kept with ${name}`);
    const from = total - this.shownBack - messages.length + 1;
    this.say(
      term`* ${own(first ? "history" : "earlier")} with ${name}: ${from}-${
        from + messages.length - 1
      } of ${total}${own(from > 1 ? " (/more for earlier)" : "")}`,
    );
    for (const m of messages) this.say(historyLine(m));
    this.shownBack += messages.length;
    history.markRead(conv);
  }

  /** Switch to conversation `c` and show its last page. */
  switchTo(c: Current): void {
    this.talkTo(c);
    this.showPage(true);
  }

  /** The conversation `target` names: "all", a known user, or one kept in the history. */
  conversationOf(target: string): Current {
    if (target === "all" || target === "public") return { to: "public", label: "all" };
    try {
      const peer = this.client.resolve(target);
      return { to: peer.userId, label: peer.label };
    } catch (e) {
      const history = this.history;
      const conv = history?.findByLabel(target);
      if (conv) return { to: conv, label: history!.conversations().find((c) => c.conv === conv)!.label };
      throw e;
    }
  }
}
