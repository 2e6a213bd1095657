/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The web app's entry (bundled into /app.js): first-run screen (create or import an identity), then the chat:
 * conversations, people, files and the network panel (welcome.ts, message_view.ts, network_view.ts draw parts).
 * Everything here is view; the model is session.ts (with model.ts and transfers.ts).
 *
 * @module
 */
import { Db } from "./db.ts";
import { DecryptPool, usePool } from "./decrypt_pool.ts";
import { h, replace } from "./dom.ts";
import { type Identity, keyFileText, loadIdentity } from "./identity.ts";
import { download, shortId, time, toast } from "./ui.ts";
import { messageView } from "./message_view.ts";
import { openNetwork } from "./network_view.ts";
import { welcome } from "./welcome.ts";
import { type ChatMessage, type Conversation, PUBLIC, Session } from "./session.ts";

const root = document.getElementById("app")!;

// ---------------------------------------------------------------- the chat

class View {
  private readonly shell: HTMLElement;
  private readonly statusEl = h("span", {
    class: "status",
    role: "status",
    "aria-live": "polite",
    id: "status",
  });
  private readonly convList = h("ul", { id: "conversations", "aria-label": "Conversations" });
  private readonly peopleList = h("ul", { id: "people", "aria-label": "People online" });
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
  private scheduled = false;
  private lastConv = "";
  private lastCount = -1;

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
      h("span", { class: "filepick" }, this.fileInput, h("label", { for: "file-input" }, "Send a file…")),
      sendBtn,
    ]);
    this.text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.submit();
      }
    });
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
          h("strong", { id: "me-name" }, s.me.displayName),
          h("span", { class: "mono", title: "Your key fingerprint", id: "me-fp" }, ""),
        ]),
        this.statusEl,
        h("button", {
          type: "button",
          id: "open-network",
          onclick: () => openNetwork(this.netDialog, (n) => this.s.maxFileBytes = n),
        }, "Network"),
        h("button", {
          type: "button",
          id: "export-key",
          onclick: () => {
            download(`${s.me.displayName.replace(/[^\w.-]+/g, "_") || "me"}.json`, keyFileText(s.me));
            toast("Key file saved. It is sealed with your passphrase; keep both.");
          },
        }, "Export key"),
      ]),
      h("div", { class: "main" }, [
        h("nav", { class: "side", id: "sidebar", "aria-label": "Conversations and people" }, [
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
      h("div", { id: "toast", role: "status", "aria-live": "polite" }),
    );
    root.removeAttribute("aria-busy");
    s.onChange = () => this.schedule();
    s.onProgress = (m) => this.progress(m);
    this.render();
    this.text.focus();
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

  render(): void {
    const s = this.s;
    document.getElementById("me-fp")!.textContent = s.myFingerprint;
    const st = s.status;
    this.statusEl.className = `status ${
      st.kind === "online" ? "online" : st.kind === "connecting" ? "connecting" : "offline"
    }`;
    this.statusEl.textContent = st.kind === "online"
      ? "Online"
      : st.kind === "connecting"
      ? (st.attempt > 1 ? "Reconnecting…" : "Connecting…")
      : st.kind === "refused"
      ? st.reason
      : `Offline: ${st.reason}. Retrying at ${time(st.retryAt)}`;
    this.statusEl.dataset.state = st.kind;

    // conversations: public first, then DMs by latest activity
    const convs = [...s.conversations.values()].filter((c) => c.id === PUBLIC || c.messages.length);
    convs.sort((a, b) =>
      a.id === PUBLIC ? -1 : b.id === PUBLIC ? 1 : (b.messages.at(-1)?.ts ?? 0) - (a.messages.at(-1)?.ts ?? 0)
    );
    replace(this.convList, convs.map((c) => this.convItem(c)));

    const people = s.people().filter((p) => p.userId !== s.me.userId);
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
                h("span", {}, s.label(p.userId)),
                h("span", { class: "sub mono" }, `key ${p.fingerprint.slice(0, 19)}…`),
                h("span", { class: "sub" }, `home: ${this.serverLabel(p.serverId)}`),
              ]),
            ]),
          )
        )
        : [h("li", { class: "muted small" }, "Nobody else is online yet.")],
    );

    const conv = s.conv(s.current);
    const person = people.find((p) => p.userId === s.current);
    replace(
      this.head,
      h("h2", { id: "conv-title" }, s.label(s.current)),
      s.current === PUBLIC
        ? h("span", { class: "small muted" }, "Everyone on the network reads this channel.")
        : h("span", { class: "small muted mono" }, [
          person ? (person.online ? "online" : "offline: messages are queued by their server") : "",
          person ? ` · home ${this.serverLabel(person.serverId)} · key ${person.fingerprint}` : "",
        ]),
    );
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 60 ||
      this.lastConv !== conv.id || conv.messages.length !== this.lastCount;
    replace(
      this.log,
      conv.messages.length ? conv.messages.map((m) => messageView(m, (id) => this.s.label(id))) : [
        h(
          "p",
          { class: "empty" },
          s.current === PUBLIC ? "No public messages yet. Say hello!" : "No messages yet.",
        ),
      ],
    );
    if (stick) this.log.scrollTop = this.log.scrollHeight;
    this.lastConv = conv.id;
    this.lastCount = conv.messages.length;
    this.text.setAttribute("aria-label", `Message to ${s.label(s.current)}`);
  }

  /** "this server" or a short server id. */
  private serverLabel(id: string): string {
    return id && id === this.s.client?.serverId ? "this server" : `server ${shortId(id)}`;
  }

  private convItem(c: Conversation): HTMLElement {
    const s = this.s;
    const label = s.label(c.id);
    const online = c.id === PUBLIC || s.client?.isOnline(c.id);
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
        h("span", { class: "who" }, label),
        c.unread ? h("span", { class: "badge", "aria-hidden": "true" }, String(c.unread)) : null,
      ]),
    );
  }

  /** Move one progress bar now (a redraw of everything waits for the next frame). */
  private progress(m: ChatMessage): void {
    const f = m.file;
    const find = () =>
      this.log.querySelector(`article[data-id="${m.id}"] progress.file-progress`) as
        | HTMLProgressElement
        | null;
    let el = find();
    if (!el && m.conv === this.s.current) {
      this.render(); // the transfer is newer than the last frame: draw it now, so every step shows
      el = find();
    }
    if (!f || !el) return;
    const pct = f.size ? Math.round((f.done / f.size) * 100) : 100;
    el.value = pct;
    el.setAttribute("value", String(pct));
    el.setAttribute("aria-label", `${m.dir === "out" ? "Sending" : "Receiving"} ${f.name}: ${pct}%`);
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
  try {
    db = await Db.open();
  } catch (e) {
    replace(
      root,
      h(
        "p",
        { class: "notice" },
        `This browser does not let the page store your key: ${(e as Error).message}`,
      ),
    );
    return;
  }
  const go = async (id: Identity) => {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
    // Decryptions of incoming files run on a pool of workers, one per core (at most 4).
    usePool(id.key, new DecryptPool("/decrypt-worker.js", Math.min(navigator.hardwareConcurrency || 1, 4)));
    const s = new Session(id, db, url);
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
