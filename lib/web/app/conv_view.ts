/// <reference lib="dom" />
/**
 * The conversation on screen: its head (title, how far its contact's key is trusted, the safety code and delete
 * buttons, what is known of the contact, key warnings) and its log of messages. The head is drawn again only
 * when what it shows changed, and a message's element only when that message changed; a file transfer's
 * progress bar moves at each step without a redraw.
 *
 * @module
 */
import { h, replace } from "./dom.ts";
import { messageView, progressText } from "./message_view.ts";
import { type ChatMessage, type Conversation, type Person, PUBLIC } from "./model.ts";
import type { Session } from "./session.ts";
import { keyWarning, openSafety, serverKeyWarning, trustMark } from "./trust_view.ts";
import { ask, serverLabel } from "./ui.ts";

/** The head and the log of the conversation on screen. */
export class ConvView {
  readonly head = h("div", { class: "conv-head" });
  readonly log = h("div", { class: "log", role: "log", "aria-live": "polite", id: "messages", tabindex: 0 });
  private headShown = "";
  /** The element drawn for each message on screen, and what it showed. */
  private readonly drawn = new Map<string, { sig: string; el: HTMLElement }>();
  private lastConv = "";
  private lastCount = -1;
  /** Object URLs of received files in this tab. */
  private readonly urls = new WeakMap<Blob, string>();
  private readonly loading = new Set<string>();

  /** The conversation view of `s`; `redraw` asks for the next frame, `drawNow` draws everything at once. */
  constructor(
    private readonly s: Session,
    private readonly redraw: () => void,
    private readonly drawNow: () => void,
  ) {}

  /** Draw what changed of the current conversation; `people` as the side panel shows them. */
  render(people: Person[]): void {
    const conv = this.s.conv(this.s.current);
    this.renderHead(conv, people.find((p) => p.userId === conv.id));
    this.renderLog(conv);
  }

  private renderHead(conv: Conversation, person: Person | undefined): void {
    const s = this.s;
    const id = conv.id;
    const trust = id === PUBLIC ? null : s.people.trustOf(id);
    const keys = s.people.keys();
    const label = s.people.label(id);
    const ours = s.people.serverId();
    const sig = JSON.stringify([
      id,
      label,
      conv.messages.length > 0,
      person?.online,
      person?.serverId,
      person?.fingerprint,
      ours,
      trust,
      id === PUBLIC ? keys : null,
    ]);
    if (sig === this.headShown) return;
    this.headShown = sig;
    const small = (attrs: Record<string, string>, onclick: () => void, text: string) =>
      h("button", { type: "button", class: "small-button", ...attrs, onclick }, text);
    replace(
      this.head,
      h("div", { class: "conv-title-row" }, [
        h("h2", { id: "conv-title", title: label }, label),
        trust ? trustMark(trust) : null,
        trust ? small({ id: "safety-code" }, () => openSafety(s, id), "Safety code") : null,
        conv.messages.length ? small({ id: "delete-conv" }, () => this.deleteConv(id), "Delete…") : null,
      ]),
      id === PUBLIC
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
            ? ` · home ${serverLabel(person.serverId, ours)} · ${trust ? "pinned key" : "key"} ${
              trust?.fingerprint || person.fingerprint
            }`
            : "",
        ]),
      trust?.pending ? keyWarning(s, id, trust) : null,
      id === PUBLIC && keys.serverPending ? serverKeyWarning(s, keys) : null,
    );
  }

  private async deleteConv(id: string): Promise<void> {
    const r = await ask(
      `Delete the conversation with ${this.s.people.label(id)}?`,
      "Its messages and received files are deleted from this browser (all its tabs). Others keep their copies.",
      [{ label: "Delete conversation", primary: true }],
    );
    if (r) this.s.deleteConversation(id);
  }

  /** The messages of `conv`: an element is made again only for a message that changed. */
  private renderLog(conv: Conversation): void {
    const s = this.s;
    if (this.lastConv !== conv.id) this.drawn.clear();
    const actions = {
      label: (id: string) => s.people.label(id),
      accept: (m: ChatMessage) => s.accept(m),
      decline: (m: ChatMessage) => s.decline(m),
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
        m.dir === "out" ? "" : s.people.label(m.from),
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
      this.s.fileBlob(m).then(() => this.redraw()).finally(() => this.loading.delete(m.id));
    }
    return null;
  }

  /** Move one progress bar and its text now (a redraw of everything waits for the next frame). */
  progress(m: ChatMessage): void {
    const f = m.file;
    const box = () => this.log.querySelector(`article[data-id="${CSS.escape(m.id)}"]`);
    let el = box();
    if (!el && m.conv === this.s.current) {
      this.drawNow(); // the transfer is newer than the last frame: draw it now, so every step shows
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
