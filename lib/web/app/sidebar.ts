/// <reference lib="dom" />
/**
 * The web app's side panel: the hint to turn on notifications, the conversations (the public channel first,
 * then DMs by latest activity, with unread counts) and the people (online across the network, then offline
 * contacts, with their key and home server). Each list is drawn again only when what it shows changed.
 *
 * @module
 */
import { h, replace } from "./dom.ts";
import { type Conversation, type Person, PUBLIC } from "./model.ts";
import type { Session } from "./session.ts";
import { serverLabel } from "./ui.ts";

/** What the side panel's buttons do. */
export interface SidebarActions {
  /** Open a conversation. */
  open(id: string): void;
  /** Ask for notifications. */
  askNotifications(): void;
}

/** The side panel. */
export class Sidebar {
  readonly notifyHint = h("div", { class: "notify-hint" });
  readonly convList = h("ul", { id: "conversations", "aria-label": "Conversations" });
  readonly peopleList = h("ul", { id: "people", "aria-label": "People online" });
  /** What each part showed when last drawn. */
  private readonly shown = { hint: "", convs: "", people: "" };

  /** The side panel of `s`. */
  constructor(private readonly s: Session, private readonly act: SidebarActions) {}

  /** Draw what changed; `people` are the people to show (without ourselves). */
  render(people: Person[]): void {
    const s = this.s;
    const perm = typeof Notification === "function" ? Notification.permission : "denied";
    if (this.changed("hint", perm)) {
      replace(
        this.notifyHint,
        perm === "default"
          ? h("button", {
            type: "button",
            class: "link-button small",
            id: "notify-hint",
            onclick: () => this.act.askNotifications(),
          }, "Get notified of new messages")
          : null,
      );
    }

    // conversations: public first, then DMs by latest activity
    const convs = [...s.conversations.values()].filter((c) => c.id === PUBLIC || c.messages.length);
    convs.sort((a, b) =>
      a.id === PUBLIC ? -1 : b.id === PUBLIC ? 1 : (b.messages.at(-1)?.ts ?? 0) - (a.messages.at(-1)?.ts ?? 0)
    );
    const convSig = JSON.stringify(
      convs.map((c) => [c.id, s.people.label(c.id), c.unread, c.id === s.current, s.people.isOnline(c.id)]),
    );
    if (this.changed("convs", convSig)) replace(this.convList, convs.map((c) => this.convItem(c)));

    const peopleSig = JSON.stringify(
      people.map((p) => {
        const t = s.people.trustOf(p.userId);
        const label = s.people.label(p.userId);
        return [
          p.userId,
          label,
          p.online,
          p.serverId,
          p.fingerprint,
          s.people.serverId(),
          t?.verified,
          !!t?.pending,
        ];
      }),
    );
    if (this.changed("people", peopleSig)) {
      replace(
        this.peopleList,
        people.length
          ? people.map((p) => this.personItem(p))
          : [h("li", { class: "muted small" }, "Nobody else is online yet.")],
      );
    }
  }

  /** True (and remembered) when part `name` would show something else than last time. */
  private changed(name: keyof Sidebar["shown"], sig: string): boolean {
    if (this.shown[name] === sig) return false;
    this.shown[name] = sig;
    return true;
  }

  private personItem(p: Person): HTMLElement {
    const s = this.s;
    const label = s.people.label(p.userId);
    const home = serverLabel(p.serverId, s.people.serverId());
    const t = s.people.trustOf(p.userId);
    return h(
      "li",
      {},
      h("button", {
        type: "button",
        class: "person",
        "data-user": p.userId,
        "aria-label": `${label}, ${p.online ? "online" : "offline"}, home ${home}, key ${p.fingerprint}. ` +
          "Open conversation",
        onclick: () => this.act.open(p.userId),
      }, [
        h("span", { class: `dot ${p.online ? "on" : ""}`, "aria-hidden": "true" }),
        h("span", { class: "who" }, [
          h("span", { class: "name", title: label }, [
            label,
            t?.verified ? h("span", { class: "trust-verified" }, " ✓") : null,
            t?.pending ? h("span", { class: "trust-changed" }, " ⚠") : null,
          ]),
          h("span", { class: "sub mono" }, `key ${p.fingerprint.slice(0, 19)}…`),
          h("span", { class: "sub" }, `home: ${home}`),
        ]),
      ]),
    );
  }

  private convItem(c: Conversation): HTMLElement {
    const s = this.s;
    const label = s.people.label(c.id);
    const online = c.id === PUBLIC || s.people.isOnline(c.id);
    return h(
      "li",
      {},
      h("button", {
        type: "button",
        class: "conv-item",
        "data-conv": c.id,
        "aria-current": c.id === s.current ? "true" : "false",
        "aria-label": `${label}${c.unread ? `, ${c.unread} unread` : ""}`,
        onclick: () => this.act.open(c.id),
      }, [
        h("span", { class: `dot ${online ? "on" : ""}`, "aria-hidden": "true" }),
        h("span", { class: "name conv-name", title: label }, label),
        c.unread ? h("span", { class: "badge", "aria-hidden": "true" }, String(c.unread)) : null,
      ]),
    );
  }
}
