/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The web app's entry (bundled into /app.js): first-run screen (create or import an identity), then the chat:
 * conversations, people, files, the network panel and the account panel (welcome.ts, message_view.ts,
 * network_view.ts draw parts). Everything here is view; the model is session.ts (with model.ts, transfers.ts
 * and history.ts).
 *
 * @module
 */
import { Db } from "./db.ts";
import { DecryptPool, usePool } from "./decrypt_pool.ts";
import { h, replace } from "./dom.ts";
import { History } from "./history.ts";
import { type Identity, keyFileText, loadIdentity } from "./identity.ts";
import { download, shortId, toast } from "./ui.ts";
import { messageView, progressText } from "./message_view.ts";
import { openNetwork } from "./network_view.ts";
import { welcome } from "./welcome.ts";
import { type ChatMessage, type Conversation, PUBLIC, Session } from "./session.ts";
import type { TrustView } from "./model.ts";

const root = document.getElementById("app")!;
const TITLE = "socp chat";

/** A modal question with buttons; resolves with the label of the button pressed ("" when dismissed). */
function ask(text: string, detail: string, buttons: { label: string; primary?: boolean }[]): Promise<string> {
  const d = h("dialog", { class: "ask", "aria-labelledby": "ask-h" });
  return new Promise((resolve) => {
    const done = (v: string) => {
      d.close();
      d.remove();
      resolve(v);
    };
    replace(
      d,
      h("h2", { id: "ask-h" }, text),
      h("p", {}, detail),
      h(
        "div",
        { class: "row" },
        buttons.map((b) =>
          h(
            "button",
            { type: "button", class: b.primary ? "primary" : "", onclick: () => done(b.label) },
            b.label,
          )
        ),
        h("button", { type: "button", onclick: () => done("") }, "Cancel"),
      ),
    );
    d.addEventListener("cancel", () => done(""));
    document.body.appendChild(d);
    d.showModal();
  });
}

// ---------------------------------------------------------------- the chat

class View {
  private readonly shell: HTMLElement;
  private readonly statusEl = h("span", {
    class: "status",
    role: "status",
    "aria-live": "polite",
    id: "status",
  });
  private readonly banner = h("div", { class: "banner", id: "link-banner", role: "status", hidden: true });
  private readonly convList = h("ul", { id: "conversations", "aria-label": "Conversations" });
  private readonly peopleList = h("ul", { id: "people", "aria-label": "People online" });
  private readonly notifyHint = h("div", { class: "notify-hint" });
  private readonly head = h("div", { class: "conv-head" });
  private readonly log = h("div", {
    class: "log",
    role: "log",
    "aria-live": "polite",
    id: "messages",
    tabindex: 0,
  });
  private readonly text = h("textarea", {
    id: "composer-text",
    rows: 1,
    placeholder: "Write a message",
    "aria-label": "Message",
  });
  private readonly fileInput = h("input", { type: "file", id: "file-input" });
  private readonly netDialog = h("dialog", { id: "network", "aria-labelledby": "network-h" });
  private readonly accountDialog = h("dialog", { id: "account", "aria-labelledby": "account-h" });
  private scheduled = false;
  /** What each part showed when last drawn. */
  private readonly parts = new Map<string, string>();
  /** The element drawn for each message on screen, and what it showed. */
  private readonly drawn = new Map<string, { sig: string; el: HTMLElement }>();
  private lastConv = "";
  private lastCount = -1;
  private tickTimer: ReturnType<typeof setInterval> | undefined;
  /** Object URLs of received files in this tab. */
  private readonly urls = new WeakMap<Blob, string>();
  private readonly loading = new Set<string>();

  constructor(private readonly s: Session) {
    const sendBtn = h("button", { class: "primary", type: "submit", id: "send" }, "Send");
    const composer = h("form", {
      class: "composer",
      "aria-label": "Write a message",
      onsubmit: (e: Event) => {
        e.preventDefault();
        this.submit();
      },
    }, [
      h("label", { for: "composer-text", class: "visually-hidden" }, "Message"),
      this.text,
      h("span", { class: "filepick" }, this.fileInput, h("label", { for: "file-input" }, "File…")),
      sendBtn,
    ]);
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
    this.text.addEventListener("input", () => this.grow());
    this.fileInput.addEventListener("change", () => {
      const f = this.fileInput.files?.[0];
      this.fileInput.value = "";
      if (f) this.s.sendFile(this.s.current, f);
    });
    this.shell = h("div", { class: "shell" }, [
      h("header", { class: "topbar" }, [
        h("button", {
          class: "menu-toggle",
          type: "button",
          "aria-controls": "sidebar",
          onclick: () => this.shell.classList.toggle("show-side"),
        }, "Chats"),
        h("h1", {}, "socp"),
        h("div", { class: "me" }, [
          h("strong", { id: "me-name", title: s.me.displayName }, s.me.displayName),
          h("span", { class: "mono", title: "Your key fingerprint", id: "me-fp" }, ""),
        ]),
        this.statusEl,
        h("button", {
          type: "button",
          id: "open-network",
          onclick: () => openNetwork(this.netDialog, (n) => this.s.maxFileBytes = n),
        }, "Network"),
        h("button", { type: "button", id: "open-account", onclick: () => this.openAccount() }, "Account"),
      ]),
      this.banner,
      h("div", { class: "main" }, [
        h("nav", { class: "side", id: "sidebar", "aria-label": "Conversations and people" }, [
          this.notifyHint,
          h("h2", {}, "Conversations"),
          this.convList,
          h("h2", {}, "People"),
          this.peopleList,
        ]),
        h("section", { class: "conv", "aria-label": "Conversation" }, [this.head, this.log, composer]),
      ]),
    ]);
    replace(
      root,
      this.shell,
      this.netDialog,
      this.accountDialog,
      h("div", { id: "toast", role: "status", "aria-live": "polite" }),
    );
    root.removeAttribute("aria-busy");
    s.onChange = () => this.schedule();
    s.onProgress = (m) => this.progress(m);
    s.onIncoming = (m) => this.notify(m);
    s.onSignedOut = () => location.reload();
    const vis = () => {
      s.visible = document.visibilityState === "visible";
      s.sayTab();
      this.title();
    };
    document.addEventListener("visibilitychange", vis);
    vis();
    this.render();
    this.text.focus();
  }

  /** The composer grows with its text (up to its CSS max-height, then it scrolls). */
  private grow(): void {
    this.text.style.height = "auto";
    this.text.style.height = `${this.text.scrollHeight + 2}px`;
  }

  private submit(): void {
    const t = this.text.value.trim();
    if (!t) return;
    if (t.length > 4000) {
      toast("That message is too long (4,000 characters at most).");
      return;
    }
    this.s.send(this.s.current, t);
    this.text.value = "";
    this.grow();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  private open(id: string): void {
    this.s.open(id);
    this.shell.classList.remove("show-side");
    this.text.focus();
  }

  /** Unread count in the title while the tab is hidden. */
  private title(): void {
    let n = 0;
    for (const c of this.s.conversations.values()) n += c.unread;
    document.title = document.visibilityState === "hidden" && n ? `(${n}) ${TITLE}` : TITLE;
  }

  /** A system notification for a message that arrives while no tab of ours is looked at. */
  private notify(m: ChatMessage): void {
    if (this.s.role !== "leader" || this.s.anyTabVisible()) return;
    if (typeof Notification !== "function" || Notification.permission !== "granted") return;
    const who = m.conv === PUBLIC ? `${this.s.label(m.from)} in the public channel` : this.s.label(m.from);
    const body = m.file ? `offers a file: ${m.file.name}` : m.text.slice(0, 140);
    try {
      const n = new Notification(who, { body, tag: m.id });
      n.onclick = () => {
        globalThis.focus();
        this.open(m.conv);
        n.close();
      };
    } catch { /* notifications unavailable here */ }
  }

  private async askNotifications(): Promise<void> {
    if (typeof Notification !== "function") return toast("This browser has no notifications.");
    const p = await Notification.requestPermission();
    toast(
      p === "granted"
        ? "Notifications on: you are told of new messages while this tab is hidden."
        : "Notifications are blocked for this site (the browser's site settings can allow them).",
    );
    this.render();
  }

  private openAccount(): void {
    const d = this.accountDialog;
    const s = this.s;
    const perm = typeof Notification === "function" ? Notification.permission : "denied";
    replace(d, [
      h("h2", { id: "account-h" }, "Account"),
      h("dl", { class: "kv" }, [
        h("dt", {}, "Name"),
        h("dd", { class: "ellipsis" }, s.me.displayName),
        h("dt", {}, "User id"),
        h("dd", { class: "mono" }, s.me.userId),
        h("dt", {}, "Key fingerprint"),
        h("dd", { class: "mono" }, s.myFingerprint),
      ]),
      h("div", { class: "stack" }, [
        h("button", {
          type: "button",
          id: "export-key",
          onclick: () => this.exportKey(),
        }, "Export key"),
        perm === "default"
          ? h("button", {
            type: "button",
            id: "enable-notifications",
            onclick: () => this.askNotifications(),
          }, "Turn on notifications")
          : h("p", { class: "small muted" }, `Notifications: ${perm === "granted" ? "on" : "blocked"}.`),
        h("button", {
          type: "button",
          id: "wipe-history",
          onclick: async () => {
            const r = await ask(
              "Delete all history?",
              "Every conversation and every received file kept in this browser is deleted, in all its tabs. Your identity stays.",
              [{ label: "Delete all history", primary: true }],
            );
            if (r) {
              await s.wipeHistory();
              toast("All history deleted.");
            }
          },
        }, "Delete all history…"),
        h("button", { type: "button", id: "sign-out", onclick: () => this.signOut() }, "Sign out…"),
      ]),
      h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")),
    ]);
    if (!d.open) d.showModal();
  }

  private exportKey(): void {
    const s = this.s;
    download(`${s.me.displayName.replace(/[^\w.-]+/g, "_") || "me"}.json`, keyFileText(s.me));
    toast("Key file saved. It is sealed with your passphrase; keep both.");
  }

  private async signOut(): Promise<void> {
    for (;;) {
      const r = await ask(
        "Sign out of this browser?",
        "Your key, contacts and history are deleted from this browser (all its tabs). To use this identity again, " +
          "here or elsewhere, you need its key file: export it first.",
        [{ label: "Export key first" }, { label: "Sign out and delete", primary: true }],
      );
      if (r === "Export key first") {
        this.exportKey();
        continue;
      }
      if (r !== "Sign out and delete") return;
      await this.s.signOut();
      location.reload();
      return;
    }
  }

  render(): void {
    const s = this.s;
    this.shell.dataset.role = s.role; // whether this tab holds the connection
    document.getElementById("me-fp")!.textContent = s.myFingerprint;
    this.renderStatus();
    this.title();
    const perm = typeof Notification === "function" ? Notification.permission : "denied";
    // Each part is drawn again only when what it shows changed (a redraw during a file transfer stays short).
    if (this.changedPart("hint", perm)) {
      replace(
        this.notifyHint,
        perm === "default"
          ? h("button", {
            type: "button",
            class: "link-button small",
            id: "notify-hint",
            onclick: () => this.askNotifications(),
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
      convs.map((c) => [c.id, s.label(c.id), c.unread, c.id === s.current, s.isOnline(c.id)]),
    );
    if (this.changedPart("convs", convSig)) replace(this.convList, convs.map((c) => this.convItem(c)));

    const people = s.people().filter((p) => p.userId !== s.me.userId);
    const peopleSig = JSON.stringify(
      people.map((p) => {
        const t = s.trustOf(p.userId);
        return [
          p.userId,
          s.label(p.userId),
          p.online,
          p.serverId,
          p.fingerprint,
          s.serverId,
          t?.verified,
          !!t?.pending,
        ];
      }),
    );
    if (this.changedPart("people", peopleSig)) {
      replace(
        this.peopleList,
        people.length
          ? people.map((p) =>
            h(
              "li",
              {},
              h("button", {
                type: "button",
                class: "person",
                "data-user": p.userId,
                "aria-label": `${s.label(p.userId)}, ${p.online ? "online" : "offline"}, home ${
                  this.serverLabel(p.serverId)
                }, key ${p.fingerprint}. Open conversation`,
                onclick: () => this.open(p.userId),
              }, [
                h("span", { class: `dot ${p.online ? "on" : ""}`, "aria-hidden": "true" }),
                h("span", { class: "who" }, [
                  h("span", { class: "name", title: s.label(p.userId) }, [
                    s.label(p.userId),
                    s.trustOf(p.userId)?.verified ? h("span", { class: "trust-verified" }, " ✓") : null,
                    s.trustOf(p.userId)?.pending ? h("span", { class: "trust-changed" }, " ⚠") : null,
                  ]),
                  h("span", { class: "sub mono" }, `key ${p.fingerprint.slice(0, 19)}…`),
                  h("span", { class: "sub" }, `home: ${this.serverLabel(p.serverId)}`),
                ]),
              ]),
            )
          )
          : [h("li", { class: "muted small" }, "Nobody else is online yet.")],
      );
    }

    const conv = s.conv(s.current);
    const person = people.find((p) => p.userId === s.current);
    const trust = s.current === PUBLIC ? null : s.trustOf(s.current);
    const keys = s.keys();
    const headSig = JSON.stringify([
      s.current,
      s.label(s.current),
      conv.messages.length > 0,
      person?.online,
      person?.serverId,
      person?.fingerprint,
      s.serverId,
      trust,
      s.current === PUBLIC ? keys : null,
    ]);
    if (this.changedPart("head", headSig)) {
      replace(
        this.head,
        h("div", { class: "conv-title-row" }, [
          h("h2", { id: "conv-title", title: s.label(s.current) }, s.label(s.current)),
          trust
            ? h(
              "span",
              { class: `trust trust-${trust.trust}`, id: "trust-mark", "data-trust": trust.trust },
              trust.trust === "verified"
                ? "✓ verified"
                : trust.trust === "derived"
                ? "✓ key matches id"
                : trust.trust === "changed"
                ? "⚠ key changed"
                : "not verified",
            )
            : null,
          trust
            ? h("button", {
              type: "button",
              class: "small-button",
              id: "safety-code",
              onclick: () => this.openSafety(s.current),
            }, "Safety code")
            : null,
          conv.messages.length
            ? h("button", {
              type: "button",
              class: "small-button",
              id: "delete-conv",
              onclick: () => this.deleteConv(conv.id),
            }, "Delete…")
            : null,
        ]),
        s.current === PUBLIC
          ? h("span", { class: "small muted" }, [
            "Everyone on the network reads this channel, and every server holds its key: it protects against " +
            "observers of the network only.",
            keys.channel
              ? h("span", { class: "mono", id: "channel-key" }, ` Channel key ${keys.channel}.`)
              : "",
          ])
          : h("span", { class: "small muted mono conv-sub" }, [
            person ? (person.online ? "online" : "offline: messages are queued by their server") : "",
            person
              ? ` · home ${this.serverLabel(person.serverId)} · ${trust ? "pinned key" : "key"} ${
                trust?.fingerprint || person.fingerprint
              }`
              : "",
          ]),
        trust?.pending ? this.keyWarning(s.current, trust) : null,
        s.current === PUBLIC && keys.serverPending
          ? h("div", { class: "key-warning", role: "alert", id: "server-key-warning" }, [
            h(
              "p",
              {},
              `⚠ Your server presents a different key than the one pinned at first contact: pinned ${keys.server}, ` +
                `now ${keys.serverPending}. Public channel keys from it are refused until you accept it.`,
            ),
            h("button", { type: "button", onclick: () => s.trustServerKey() }, "Accept the server's new key"),
          ])
          : null,
      );
    }
    // Sending to a contact whose key changed is blocked until the new key is accepted.
    const blocked = !!trust?.pending;
    this.text.disabled = blocked;
    this.text.placeholder = blocked
      ? `Blocked: ${s.label(s.current)}'s key changed (see above)`
      : "Write a message";
    this.renderLog(conv);
    this.text.setAttribute("aria-label", `Message to ${s.label(s.current)}`);
  }

  /** The warning shown in a conversation whose contact presented a new key. */
  private keyWarning(userId: string, t: TrustView): HTMLElement {
    const s = this.s;
    const label = s.label(userId);
    return h("div", { class: "key-warning", role: "alert", id: "key-warning" }, [
      h("p", {}, [
        h("strong", {}, `⚠ ${label}'s key changed.`),
        t.verified
          ? " You had verified them: this is a hard stop. Someone may be impersonating them, or they reinstalled."
          : " Someone may be impersonating them, or they made a new key (a new device, a reinstall).",
      ]),
      h("dl", { class: "kv small" }, [
        h("dt", {}, "Pinned key"),
        h("dd", { class: "mono", id: "old-fp" }, t.fingerprint),
        h("dt", {}, "New key"),
        h("dd", { class: "mono", id: "new-fp" }, t.pending!.fingerprint),
        h("dt", {}, "New safety code"),
        h("dd", { class: "mono" }, t.pending!.safetyCode),
      ]),
      h(
        "p",
        { class: "small" },
        `Messages to ${label} are not sent until you accept the new key. Compare the new safety code with them ` +
          "(in person or on a call) first.",
      ),
      t.verified
        ? h("button", {
          type: "button",
          id: "unverify",
          onclick: async () => {
            const r = await ask(
              `Remove the verified mark of ${label}?`,
              "Only if you compared the new safety code with them in person or on a call. Then you can accept the new key.",
              [{ label: "Remove the mark", primary: true }],
            );
            if (r) s.setVerified(userId, false);
          },
        }, "Remove the verified mark…")
        : h("button", {
          type: "button",
          class: "primary",
          id: "accept-key",
          onclick: () => s.trustKey(userId),
        }, "Accept new key"),
    ]);
  }

  /** The safety code panel of a conversation: both fingerprints, the code, and the "verified" mark. */
  private openSafety(userId: string): void {
    const s = this.s;
    const t = s.trustOf(userId);
    const d = h("dialog", { id: "safety", "aria-labelledby": "safety-h" });
    const close = () => {
      d.close();
      d.remove();
    };
    if (!t) return;
    replace(d, [
      h("h2", { id: "safety-h" }, `Safety code with ${s.label(userId)}`),
      h(
        "p",
        { class: "small" },
        `Compare these digits with what ${s.label(userId)} sees on their device (in person or on a call). ` +
          "If they match, nobody is in the middle: mark them verified, and a later key change becomes a hard stop.",
      ),
      h("p", { class: "mono safety-code", id: "safety-digits" }, t.safetyCode),
      h("dl", { class: "kv small" }, [
        h("dt", {}, "Your key"),
        h("dd", { class: "mono" }, s.myFingerprint),
        h("dt", {}, "Their key"),
        h("dd", { class: "mono" }, t.fingerprint),
      ]),
      t.derived
        ? h(
          "p",
          { class: "small" },
          "Their user id is derived from this key: it cannot be reused with another one.",
        )
        : null,
      h("div", { class: "row" }, [
        h("button", {
          type: "button",
          class: t.verified ? "" : "primary",
          id: "toggle-verified",
          onclick: () => {
            s.setVerified(userId, !t.verified);
            close();
          },
        }, t.verified ? "Remove the verified mark" : "Mark as verified"),
        h("button", { type: "button", onclick: close }, "Close"),
      ]),
    ]);
    d.addEventListener("cancel", close);
    document.body.appendChild(d);
    d.showModal();
  }

  /** True (and remembered) when part `name` would show something else than last time. */
  private changedPart(name: string, sig: string): boolean {
    if (this.parts.get(name) === sig) return false;
    this.parts.set(name, sig);
    return true;
  }

  /** The messages of `conv`: an element is made again only for a message that changed. */
  private renderLog(conv: Conversation): void {
    const s = this.s;
    if (this.lastConv !== conv.id) this.drawn.clear();
    const actions = {
      label: (id: string) => this.s.label(id),
      accept: (m: ChatMessage) => this.s.accept(m),
      decline: (m: ChatMessage) => this.s.decline(m),
      url: (m: ChatMessage) => this.fileUrl(m),
    };
    const els: Element[] = [];
    const keep = new Set<string>();
    for (const m of conv.messages) {
      const f = m.file;
      const sig = JSON.stringify([
        m.text,
        m.ts,
        m.state,
        m.detail,
        m.verified,
        m.warning,
        m.dir === "out" ? "" : s.label(m.from),
        f && [f.phase, f.name, f.size, f.sha256, f.kept, f.evicted, f.problem, this.fileUrl(m)],
      ]);
      let d = this.drawn.get(m.id);
      if (!d || d.sig !== sig) {
        d = { sig, el: messageView(m, actions) };
        this.drawn.set(m.id, d);
      }
      keep.add(m.id);
      els.push(d.el);
    }
    for (const id of this.drawn.keys()) if (!keep.has(id)) this.drawn.delete(id);
    if (!els.length) {
      els.push(h(
        "p",
        { class: "empty" },
        s.current === PUBLIC ? "No public messages yet. Say hello!" : "No messages yet.",
      ));
    }
    const now = this.log.children;
    if (now.length === els.length && els.every((e, i) => now[i] === e)) return;
    const stick = this.lastConv !== conv.id || conv.messages.length !== this.lastCount ||
      this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 60;
    this.log.replaceChildren(...els);
    if (stick) this.log.scrollTop = this.log.scrollHeight;
    this.lastConv = conv.id;
    this.lastCount = conv.messages.length;
  }

  /** The header's short status, and the banner that says what is going on with a button to act. */
  private renderStatus(): void {
    const st = this.s.status;
    const kind = st.kind === "online" ? "online" : st.kind === "connecting" ? "connecting" : "offline";
    this.statusEl.className = `status ${kind}`;
    this.statusEl.dataset.state = st.kind;
    this.statusEl.textContent = st.kind === "online"
      ? "Online"
      : st.kind === "connecting"
      ? (st.attempt > 1 ? "Reconnecting…" : "Connecting…")
      : st.kind === "elsewhere"
      ? "Signed in elsewhere"
      : st.kind === "refused"
      ? "Not accepted"
      : "Offline";
    const b = this.banner;
    if (!this.changedPart("status", JSON.stringify(st))) return;
    clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    if (st.kind === "online" || st.kind === "connecting") {
      b.hidden = true;
      replace(b);
      return;
    }
    b.hidden = false;
    b.dataset.kind = st.kind;
    if (st.kind === "offline") {
      b.dataset.retryAt = String(st.retryAt);
      const wait = h("span", { id: "retry-wait" });
      const tick = () => {
        const s = Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000));
        wait.textContent = st.retryAt ? (s > 0 ? ` Trying again in ${s} s.` : " Trying again now…") : "";
      };
      tick();
      this.tickTimer = setInterval(tick, 1000);
      replace(b, [
        h("span", {}, `Offline: ${st.reason}.`),
        wait,
        h("button", { type: "button", id: "retry-now", onclick: () => this.s.retryNow() }, "Retry now"),
      ]);
    } else {
      replace(b, [
        h("span", { id: "link-reason" }, st.reason),
        h(
          "button",
          { type: "button", id: "use-here", onclick: () => this.s.reconnect() },
          st.kind === "elsewhere" ? "Use this identity here" : "Try again",
        ),
      ]);
    }
  }

  private async deleteConv(id: string): Promise<void> {
    const r = await ask(
      `Delete the conversation with ${this.s.label(id)}?`,
      "Its messages and received files are deleted from this browser (all its tabs). Others keep their copies.",
      [{ label: "Delete conversation", primary: true }],
    );
    if (r) this.s.deleteConversation(id);
  }

  /** The download URL of a received file in this tab (a kept file is decrypted from the history first). */
  private fileUrl(m: ChatMessage): string | null {
    const f = m.file;
    if (!f) return null;
    if (f.blob) {
      let u = this.urls.get(f.blob);
      if (!u) {
        u = URL.createObjectURL(f.blob);
        this.urls.set(f.blob, u);
      }
      return u;
    }
    if (f.kept && !this.loading.has(m.id)) {
      this.loading.add(m.id);
      this.s.fileBlob(m).then(() => this.schedule()).finally(() => this.loading.delete(m.id));
    }
    return null;
  }

  /** "this server" or a short server id. */
  private serverLabel(id: string): string {
    return id && id === this.s.serverId ? "this server" : `server ${shortId(id)}`;
  }

  private convItem(c: Conversation): HTMLElement {
    const s = this.s;
    const label = s.label(c.id);
    const online = c.id === PUBLIC || s.isOnline(c.id);
    return h(
      "li",
      {},
      h("button", {
        type: "button",
        class: "conv-item",
        "data-conv": c.id,
        "aria-current": c.id === s.current ? "true" : "false",
        "aria-label": `${label}${c.unread ? `, ${c.unread} unread` : ""}`,
        onclick: () => this.open(c.id),
      }, [
        h("span", { class: `dot ${online ? "on" : ""}`, "aria-hidden": "true" }),
        h("span", { class: "name conv-name", title: label }, label),
        c.unread ? h("span", { class: "badge", "aria-hidden": "true" }, String(c.unread)) : null,
      ]),
    );
  }

  /** Move one progress bar and its text now (a redraw of everything waits for the next frame). */
  private progress(m: ChatMessage): void {
    const f = m.file;
    const box = () => this.log.querySelector(`article[data-id="${m.id}"]`);
    let el = box();
    if (!el && m.conv === this.s.current) {
      this.render(); // the transfer is newer than the last frame: draw it now, so every step shows
      el = box();
    }
    const bar = el?.querySelector("progress.file-progress") as HTMLProgressElement | null;
    if (!f || !bar) return;
    const pct = f.size ? Math.round((f.done / f.size) * 100) : 100;
    bar.value = pct;
    bar.setAttribute("value", String(pct));
    bar.setAttribute("aria-label", `${m.dir === "out" ? "Sending" : "Receiving"} ${f.name}: ${pct}%`);
    const text = el!.querySelector(".progress-text");
    if (text) text.textContent = progressText(m, f);
  }
}

// ---------------------------------------------------------------- start

async function start(): Promise<void> {
  if (!globalThis.isSecureContext || !crypto?.subtle) {
    replace(
      root,
      h("main", { class: "welcome" }, [
        h("h1", {}, "socp chat"),
        h(
          "p",
          { class: "notice" },
          "This page must be opened over https (or on localhost): browsers allow the cryptography it needs only there.",
        ),
      ]),
    );
    root.removeAttribute("aria-busy");
    return;
  }
  let db: Db;
  let history: History;
  try {
    db = await Db.open();
    history = await History.open(db);
  } catch (e) {
    replace(
      root,
      h(
        "p",
        { class: "notice" },
        `This browser does not let the page store your key and history: ${(e as Error).message}`,
      ),
    );
    return;
  }
  const go = async (id: Identity) => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
    // Decryptions of incoming files and messages run on a pool of workers, one per core (at most 4): with our
    // key, and with the public channel's key once it is opened.
    const pool = new DecryptPool("/decrypt-worker.js", Math.min(navigator.hardwareConcurrency || 1, 4));
    usePool(id.key, pool);
    const s = new Session(id, db, history, url);
    s.onChannelKey = (k) => usePool(k, pool);
    new View(s);
    try {
      const n = await (await fetch("/api/network", { cache: "no-store" })).json();
      if (typeof n.max_file_bytes === "number") s.maxFileBytes = n.max_file_bytes;
      if (Array.isArray(n.lab_modes) && n.lab_modes.length) {
        document.querySelector(".shell")?.prepend(
          h(
            "p",
            { class: "lab", role: "alert", id: "lab-modes" },
            `Lab mode on (${
              n.lab_modes.join(", ")
            }): this node is deliberately weakened. Do not use it for real chats.`,
          ),
        );
      }
    } catch { /* the panel says so when opened */ }
    await s.start();
  };
  const id = await loadIdentity(db);
  if (id) await go(id);
  else welcome(root, db, (i) => go(i));
}

start();
