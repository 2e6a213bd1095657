/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The web app's entry (bundled into /app.js): first-run screen (create or import an identity), then the chat:
 * the header, the side panel (sidebar.ts), the conversation (conv_view.ts), the composer, and the dialogs
 * (network_view.ts, account_view.ts, trust_view.ts); status_view.ts shows the connection, welcome.ts the first
 * run, message_view.ts one message. Everything here is view; the model is session.ts and its parts.
 *
 * @module
 */
import { askNotifications, openAccount } from "./account_view.ts";
import { ConvView } from "./conv_view.ts";
import { Db } from "./db.ts";
import { DecryptPool, poolRunner } from "./decrypt_pool.ts";
import { h, replace } from "./dom.ts";
import { History } from "./history.ts";
import { type Identity, loadIdentity } from "./identity.ts";
import { type ChatMessage, PUBLIC } from "./model.ts";
import { openNetwork } from "./network_view.ts";
import { Session } from "./session.ts";
import { Sidebar } from "./sidebar.ts";
import { StatusView } from "./status_view.ts";
import { MAX_TEXT_CHARS } from "./tab_messages.ts";
import { toast } from "./ui.ts";
import { welcome } from "./welcome.ts";

const root = document.getElementById("app")!;
const TITLE = "socp chat";

// ---------------------------------------------------------------- the chat

class View {
  private readonly shell: HTMLElement;
  private readonly status: StatusView;
  private readonly side: Sidebar;
  private readonly conv: ConvView;
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

  constructor(private readonly s: Session) {
    const redraw = () => this.render();
    this.status = new StatusView({ retryNow: () => s.retryNow(), reconnect: () => s.reconnect() });
    this.side = new Sidebar(s, {
      open: (id) => this.open(id),
      askNotifications: () => askNotifications(redraw),
    });
    this.conv = new ConvView(s, () => this.schedule(), redraw);
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
        this.status.word,
        h("button", {
          type: "button",
          id: "open-network",
          onclick: () => openNetwork(this.netDialog, (n) => this.s.maxFileBytes = n),
        }, "Network"),
        h("button", {
          type: "button",
          id: "open-account",
          onclick: () => openAccount(this.accountDialog, s, redraw),
        }, "Account"),
      ]),
      this.status.banner,
      h("div", { class: "main" }, [
        h("nav", { class: "side", id: "sidebar", "aria-label": "Conversations and people" }, [
          this.side.notifyHint,
          h("h2", {}, "Conversations"),
          this.side.convList,
          h("h2", {}, "People"),
          this.side.peopleList,
        ]),
        h("section", { class: "conv", "aria-label": "Conversation" }, [
          this.conv.head,
          this.conv.log,
          composer,
        ]),
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
    s.onProgress = (m) => this.conv.progress(m);
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
    if (t.length > MAX_TEXT_CHARS) {
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
    const label = this.s.people.label(m.from);
    const who = m.conv === PUBLIC ? `${label} in the public channel` : label;
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

  render(): void {
    const s = this.s;
    this.shell.dataset.role = s.role; // whether this tab holds the connection
    document.getElementById("me-fp")!.textContent = s.myFingerprint;
    this.status.render(s.status);
    this.title();
    // Each part is drawn again only when what it shows changed (a redraw during a file transfer stays short).
    const people = s.people.list().filter((p) => p.userId !== s.me.userId);
    this.side.render(people);
    this.conv.render(people);
    // Sending to a contact whose key changed is blocked until the new key is accepted.
    const label = s.people.label(s.current);
    const blocked = s.current !== PUBLIC && !!s.people.trustOf(s.current)?.pending;
    this.text.disabled = blocked;
    this.text.placeholder = blocked ? `Blocked: ${label}'s key changed (see above)` : "Write a message";
    this.text.setAttribute("aria-label", `Message to ${label}`);
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
    const s = new Session(id, db, history, url, poolRunner(id.key, pool));
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
