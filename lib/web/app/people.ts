/**
 * The people and keys the app shows: who is online across the network and the offline contacts, their labels,
 * what is known of each contact's key (the client core's trust rules, PROFILE §16: pinned, derived, verified,
 * changed and blocked), our server's and the public channel's keys; the user's trust actions, and the notes that
 * say a key changed. The leader reads all of it from the client core; a follower shows what the leader said.
 *
 * @module
 */
import type { ClientEvent, Contact, SocpClient } from "../../client/client.ts";
import { keyFingerprint } from "../../client/trust.ts";
import type { Identity } from "./identity.ts";
import { type KeysView, type PeopleSnapshot, type Person, PUBLIC, type TrustView } from "./model.ts";

/** How long the leader waits to tell the other tabs that people changed (a burst of changes is one message). */
const PEOPLE_POST_MS = 200;

/** What the people view needs from the session. */
export interface PeopleHost {
  readonly me: Identity;
  /** Contacts from IndexedDB (used until the first connection; then the core keeps them). */
  readonly stored: Map<string, Contact>;
  /** The client (the leader's, once connected). */
  client(): SocpClient | null;
  /** This tab holds the connection. */
  leading(): boolean;
  /** Follower: what the leader said about people (null before its snapshot). */
  mirror(): PeopleSnapshot | null;
  /** Keep a contact in IndexedDB. */
  saveContact(c: Contact): void;
  /** Add a note to conversation `conv`. */
  note(conv: string, text: string, kind?: string): void;
  /** Tell the other tabs what people look like now. */
  post(snapshot: PeopleSnapshot): void;
  /** Redraw. */
  changed(): void;
}

/** People, labels and keys as the app shows them. */
export class People {
  private postTimer: ReturnType<typeof setTimeout> | undefined;

  /** People of `host`. */
  constructor(private readonly host: PeopleHost) {}

  /** Everyone to show: online users across the network, then offline contacts. */
  list(): Person[] {
    const mirror = this.host.mirror();
    if (!this.host.leading() && mirror) return mirror.people;
    const out = new Map<string, Person>();
    const c = this.host.client();
    if (c) {
      for (const p of c.list()) out.set(p.userId, { ...p, online: true });
      for (const k of c.known.values()) {
        if (!out.has(k.userId)) out.set(k.userId, { ...k, label: c.core.labelOf(k.userId), online: false });
      }
    } else {
      for (const k of this.host.stored.values()) out.set(k.userId, { ...k, label: k.name, online: false });
    }
    return [...out.values()].sort((a, b) =>
      a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
    );
  }

  /** The id of our server ("" before the first connection). */
  serverId(): string {
    return this.host.client()?.serverId || this.host.mirror()?.serverId || "";
  }

  /** True when `userId` is online now. */
  isOnline(userId: string): boolean {
    const c = this.host.client();
    if (c) return c.isOnline(userId);
    return !!this.host.mirror()?.people.some((p) => p.userId === userId && p.online);
  }

  /** A person's label (`name#abcd` when their display name is shared by someone else known). */
  label(userId: string): string {
    const { me } = this.host;
    if (userId === PUBLIC) return "Public channel";
    if (userId === me.userId) return me.displayName;
    const c = this.host.client();
    if (c) return c.core.labelOf(userId);
    return this.host.mirror()?.labels[userId] ?? this.host.stored.get(userId)?.name ?? userId;
  }

  /** What to show about `userId`'s key (null when unknown). */
  trustOf(userId: string): TrustView | null {
    if (!this.host.leading()) return this.host.mirror()?.trust[userId] ?? null;
    const c = this.host.client();
    if (!c || userId === PUBLIC || userId === this.host.me.userId) return null;
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
    if (!this.host.leading()) {
      return this.host.mirror()?.keys ?? { server: "", serverPending: "", channel: "" };
    }
    const c = this.host.client();
    const pin = c?.core.serverPin;
    const pending = c?.core.serverKeyPending ?? "";
    const ch = c?.core.channel?.creatorPub;
    return {
      server: pin ? pin.fingerprint : "",
      serverPending: pending ? keyFingerprint(pending) : "",
      channel: ch ? keyFingerprint(ch) : "",
    };
  }

  /** Everything the other tabs show about people (the leader's). */
  snapshot(): PeopleSnapshot {
    const people = this.list();
    const labels: Record<string, string> = {};
    const trust: Record<string, TrustView> = {};
    for (const p of people) {
      labels[p.userId] = p.label;
      const t = this.trustOf(p.userId);
      if (t) trust[p.userId] = t;
    }
    return { people, labels, serverId: this.host.client()?.serverId ?? "", trust, keys: this.keys() };
  }

  /** The people changed: tell the other tabs (at most every 200 ms). */
  changedSoon(): void {
    if (this.postTimer !== undefined) return;
    this.postTimer = setTimeout(() => {
      this.postTimer = undefined;
      this.host.post(this.snapshot());
    }, PEOPLE_POST_MS);
  }

  /** Run a trust action of the user on the client; a failure becomes a note in `conv`. */
  act(conv: string, what: string, action: (c: SocpClient) => unknown): void {
    try {
      const c = this.host.client();
      if (c) action(c);
    } catch (e) {
      this.host.note(conv, `Could not ${what}: ${(e as Error).message}`);
    }
    this.changedSoon();
    this.host.changed();
  }

  /** Handle the client's events about people and keys; false for the others. */
  onEvent(e: ClientEvent): boolean {
    const note = (conv: string, text: string, kind?: string) => this.host.note(conv, text, kind);
    switch (e.kind) {
      case "contact":
        this.host.stored.set(e.contact.userId, e.contact);
        this.host.saveContact(e.contact);
        break;
      case "joined":
      case "left":
      case "channel":
      case "serverPin":
        break;
      case "keyChanged":
        note(
          e.userId,
          `⚠ ${e.label}'s key changed: it was ${e.oldFingerprint}, now ${e.newFingerprint}. ` +
            (e.verified ? "You had verified them: this is a hard stop. " : "") +
            "Messages to them are blocked until you accept the new key; compare the new safety code with them first.",
          "key-changed",
        );
        break;
      case "keyReplaced":
      case "keyRejected":
        note(e.userId, `⚠ ${e.detail}`, "key-warning");
        break;
      case "keyTrusted":
        note(e.userId, `You accepted ${e.label}'s new key (${e.fingerprint}).`);
        break;
      case "serverKeyChanged":
        note(
          PUBLIC,
          `⚠ Your server presents another key: it was ${e.oldFingerprint}, now ${
            e.newFingerprint || "none"
          }. ` +
            "Public channel keys from it are refused until you accept it.",
          "key-changed",
        );
        break;
      case "channelKeyChanged":
        note(
          PUBLIC,
          `The public channel has a new key: it was ${e.oldFingerprint}, now ${e.newFingerprint}. ` +
            "Messages from here on use the new key.",
          "channel-key",
        );
        break;
      default:
        return false;
    }
    this.changedSoon();
    this.host.changed();
    return true;
  }
}
