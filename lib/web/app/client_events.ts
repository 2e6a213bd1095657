/**
 * Where the client core's events go in the leader tab: the connection's to the link, people's and keys' to
 * people, our messages' states to the outbox, received messages to the conversations, files to the transfers,
 * and what the server said otherwise as a note.
 *
 * @module
 */
import type { ClientEvent } from "../../client/client.ts";
import type { Conversations } from "./conversations.ts";
import type { Link } from "./link.ts";
import type { Outbox } from "./outbox.ts";
import type { People } from "./people.ts";
import type { Transfers } from "./transfers.ts";

/** The parts the events go to. */
export interface EventParts {
  readonly link: Link;
  readonly people: People;
  readonly outbox: Outbox;
  readonly model: Conversations;
  readonly files: Transfers;
  /** The conversation on screen (notes go there). */
  current(): string;
}

/** Hand event `e` to the part it is about. */
export function routeEvent(p: EventParts, e: ClientEvent): void {
  if (p.link.onEvent(e) || p.people.onEvent(e)) return;
  switch (e.kind) {
    case "message":
      return p.outbox.onMessage(e.message);
    case "dm":
    case "public":
      return p.model.received(e);
    case "error":
      // Refusals of our messages and files arrive as `message` / `fileRefused`; say the rest.
      return p.model.note(p.current(), `The server said: ${e.detail}`);
    case "warning":
      return p.model.note(p.current(), e.detail);
    case "ack":
    case "fileStart":
    case "fileProgress":
    case "file":
    case "fileSendProgress":
    case "fileRefused":
      return p.files.onEvent(e);
  }
}
