/**
 * Our text messages on their way: each is shown at once (`sending`) and handed to the client core once it is in
 * the history (handovers.ts; the client exists while offline; the core keeps what is written before a
 * connection and sends it once one is there); those still waiting in the history after a reload are handed to
 * it when this tab leads. From there each moves through the states the core's `message` events carry.
 *
 * @module
 */
import type { OutgoingMessage, SocpClient } from "../../client/client.ts";
import { type ChatMessage, type Conversation, describe, insertSorted, PUBLIC } from "./model.ts";

/** What the outbox needs from the session. */
export interface OutboxHost {
  /** The leader's client (made on first use; it exists while offline). */
  client(): Promise<SocpClient>;
  /** The conversation with `id`, created empty if new. */
  conv(id: string): Conversation;
  /** A new message of ours in conversation `to`, with a fresh id starting with `prefix`. */
  mine(prefix: string, to: string, text: string): ChatMessage;
  /** Add a message to its conversation. */
  add(m: ChatMessage): void;
  /** Message `m` changed: store, share and redraw. */
  touch(m: ChatMessage): void;
}

/** Our text messages and their states. */
export class Outbox {
  /** Our messages by the core's id. */
  private readonly outgoing = new Map<string, ChatMessage>();
  /** The message whose text is being handed to the core right now (its `message` events bind to it). */
  private binding: ChatMessage | null = null;

  /** The outbox of `host`. */
  constructor(private readonly host: OutboxHost) {}

  /**
   * Our messages `ms` (oldest first) to the client core now: new ones (in the history already: handovers.ts)
   * and those still waiting in the history.
   */
  resend(ms: ChatMessage[]): void {
    for (const m of ms) this.dispatch(m);
  }

  /** Hand message `m` to the client core; its `message` events carry the states from here on. */
  private async dispatch(m: ChatMessage): Promise<void> {
    try {
      const c = await this.host.client(); // in call order: messages go to the core in the order written
      this.binding = m;
      const p = m.conv === PUBLIC ? c.all(m.text) : c.tell(m.conv, m.text);
      this.binding = null;
      this.onMessage(await p);
    } catch (e) {
      this.binding = null;
      m.state = "failed";
      m.detail = (e as Error).message;
      this.host.touch(m);
    }
  }

  /** The core says where one of our messages is (a `message` event). */
  onMessage(o: OutgoingMessage): void {
    let m = this.outgoing.get(o.id);
    if (!m) {
      if (this.binding && this.binding.text === o.text) m = this.binding;
      else {
        m = { ...this.host.mine("e", o.kind === "public" ? PUBLIC : o.to, o.text), ts: o.ts, state: o.state };
        this.host.add(m);
      }
      this.outgoing.set(o.id, m);
    }
    m.state = o.state;
    if (m.ts !== o.ts) {
      m.ts = o.ts;
      const list = this.host.conv(m.conv).messages;
      if (list.includes(m)) list.splice(list.indexOf(m), 1);
      insertSorted(list, m);
    }
    m.detail = o.error ?? describe(o);
    this.host.touch(m);
  }
}
