/**
 * Our text messages on their way: each is shown at once (`sending`), handed to the client core when connected
 * (typed before the connection, or still waiting in the history after a reload: once connected), and moves
 * through the states the core's `message` events carry.
 *
 * @module
 */
import type { OutgoingMessage, SocpClient } from "../../client/client.ts";
import { type ChatMessage, type Conversation, describe, insertSorted, PUBLIC } from "./model.ts";

/** What the outbox needs from the session. */
export interface OutboxHost {
  /** The connected client, if any. */
  client(): SocpClient | null;
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
  /** Typed (or stored) before the connection: sent once connected. */
  private readonly early: ChatMessage[] = [];

  /** The outbox of `host`. */
  constructor(private readonly host: OutboxHost) {}

  /** Messages from the history still waiting to be sent (oldest first): sent once connected. */
  waiting(ms: ChatMessage[]): void {
    this.early.push(...ms);
  }

  /** Send a text message to a user id or to the public channel. */
  send(to: string, text: string): void {
    const msg: ChatMessage = {
      ...this.host.mine("e", to, text),
      state: "sending",
      detail: "waiting for the connection",
    };
    this.host.add(msg);
    if (!this.host.client()) {
      this.early.push(msg);
      return;
    }
    this.dispatch(msg);
  }

  /** Connected: send what waited. */
  connected(): void {
    for (const m of this.early.splice(0)) this.dispatch(m);
  }

  /** Hand message `m` to the client core; its `message` events carry the states from here on. */
  private async dispatch(m: ChatMessage): Promise<void> {
    const c = this.host.client()!;
    this.binding = m;
    try {
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
