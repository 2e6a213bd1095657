/// <reference lib="dom" />
/**
 * How the web app draws one message of a conversation, and the file it carries.
 *
 * @module
 */
import { h } from "./dom.ts";
import type { ChatMessage, FileItem } from "./model.ts";
import { mib, time } from "./ui.ts";

/** One line of a conversation: a note, or a message with its sender, time, state and signature check. */
export function messageView(m: ChatMessage, label: (userId: string) => string): HTMLElement {
  if (m.dir === "note") return h("div", { class: "msg note", role: "note" }, m.text);
  const meta: (HTMLElement | string)[] = [
    h("span", { class: "from" }, m.dir === "out" ? "You" : label(m.from)),
    h("time", { datetime: new Date(m.ts).toISOString() }, time(m.ts)),
  ];
  if (m.dir === "out" && m.state) {
    const label = {
      sending: "not sent yet",
      sent: "sent",
      accepted: "accepted by server",
      failed: "not sent",
    }[m.state];
    meta.push(
      h("span", { class: `state state-${m.state}`, "data-state": m.state, title: m.detail ?? "" }, label),
    );
  }
  if (m.dir === "in" && m.unencrypted) {
    meta.push(h("span", { class: "unverified", "data-unencrypted": "yes" }, "⚠ NOT end-to-end encrypted"));
  }
  if (m.dir === "in" && m.verified !== undefined) {
    meta.push(
      m.verified ? h("span", { class: "verified", "data-verified": "yes" }, "✓ signature verified") : h(
        "span",
        { class: "unverified", "data-verified": "no" },
        `⚠ signature NOT verified${m.warning ? `: ${m.warning}` : ""}`,
      ),
    );
  }
  return h("article", {
    class: `msg ${m.dir}`,
    "data-id": m.id,
    "data-state": m.state ?? "",
  }, [
    h("div", { class: "meta" }, meta),
    m.file ? fileBox(m, m.file) : h("div", { class: "text" }, m.text),
    m.state === "failed" && m.detail ? h("div", { class: "small error" }, m.detail) : null,
  ]);
}

/** A file in a message: progress, the reason it stopped, or the download link and its checked SHA-256. */
export function fileBox(m: ChatMessage, f: FileItem): HTMLElement {
  const what = m.dir === "out" ? "Sending" : "Receiving";
  const pct = f.size ? Math.round((f.done / f.size) * 100) : 100;
  const parts: (HTMLElement | null)[] = [
    h("span", {}, h("span", { class: "tag" }, "File"), " ", h("strong", {}, f.name), ` (${mib(f.size)})`),
  ];
  if (f.phase === "sending" || f.phase === "receiving") {
    parts.push(
      h("progress", {
        max: 100,
        value: pct,
        class: "file-progress",
        "aria-label": `${what} ${f.name}: ${pct}%`,
      }),
      h(
        "span",
        { class: "small muted" },
        `${m.dir === "out" ? "encrypting and sending" : "receiving and decrypting"}: ${pct}%`,
      ),
    );
  } else if (f.phase === "failed") {
    parts.push(
      h(
        "span",
        { class: "error small", role: "alert" },
        `Transfer stopped: ${f.problem ?? "unknown reason"}`,
      ),
    );
  } else if (m.dir === "in" && f.url) {
    parts.push(
      h("a", { href: f.url, download: f.name, class: "download" }, `Download ${f.name}`),
      h("span", { class: "small muted" }, "SHA-256 checked against the sender's:"),
      h("span", { class: "small mono sha" }, f.sha256 ?? ""),
    );
  } else {
    parts.push(h("span", { class: "small muted", "data-file": "sent" }, m.detail ?? "sent"));
  }
  return h("div", { class: "file", "data-phase": f.phase }, parts);
}
