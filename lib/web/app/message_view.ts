/// <reference lib="dom" />
/**
 * How the web app draws one message of a conversation, and the file it carries.
 *
 * @module
 */
import { h } from "./dom.ts";
import { FILE_QUOTA } from "./history.ts";
import type { ChatMessage, FileItem } from "./model.ts";
import { mib, time } from "./ui.ts";

/** What a drawn message can do. */
export interface MessageActions {
  /** How to name a user. */
  label: (userId: string) => string;
  /** Accept / decline an offered file. */
  accept: (m: ChatMessage) => void;
  decline: (m: ChatMessage) => void;
  /** The download URL of a received file, or null while it loads (or when it is not kept). */
  url: (m: ChatMessage) => string | null;
}

/** http(s) links in text (trailing punctuation is not part of a link). */
const LINK = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/**
 * Text with its http(s) links made clickable: built with DOM nodes (text stays text), each link opening in a new
 * tab with `rel="noopener noreferrer"`.
 */
export function linkify(text: string): (Node | string)[] {
  const out: (Node | string)[] = [];
  let last = 0;
  for (const match of text.matchAll(LINK)) {
    let url = match[0];
    const trail = /[.,;:!?)\]}]+$/.exec(url);
    if (trail) url = url.slice(0, url.length - trail[0].length);
    let ok = false;
    try {
      const u = new URL(url);
      ok = u.protocol === "http:" || u.protocol === "https:";
    } catch { /* not a link */ }
    if (!ok || !url) continue;
    const at = match.index!;
    if (at > last) out.push(text.slice(last, at));
    out.push(h("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: "link" }, url));
    last = at + url.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** One line of a conversation: a note, or a message with its sender, time, state and signature check. */
export function messageView(m: ChatMessage, act: MessageActions): HTMLElement {
  const label = act.label;
  if (m.dir === "note") {
    const alert = m.kind === "key-changed" || m.kind === "key-warning";
    return h("div", {
      class: `msg note${m.kind ? ` note-${m.kind}` : ""}`,
      role: alert ? "alert" : "note",
      "data-kind": m.kind ?? "",
    }, m.text);
  }
  // A message whose signature did not verify is not shown as the claimed sender's.
  const unverified = m.dir === "in" && m.verified === false;
  const meta: (HTMLElement | string)[] = [
    h(
      "span",
      { class: unverified ? "from unverified" : "from" },
      m.dir === "out"
        ? "You"
        : unverified
        ? `Unverified sender (claims to be ${label(m.from)})`
        : label(m.from),
    ),
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
    class: `msg ${m.dir}${unverified ? " unverified-msg" : ""}`,
    "data-id": m.id,
    "data-state": m.state ?? "",
  }, [
    h("div", { class: "meta" }, meta),
    m.file ? fileBox(m, m.file, act) : h("div", { class: "text" }, linkify(m.text)),
    m.state === "failed" && m.detail ? h("div", { class: "small error" }, m.detail) : null,
  ]);
}

/** What the progress line says (kept in step with the bar by main.ts). */
export function progressText(m: ChatMessage, f: FileItem): string {
  const pct = f.size ? Math.round((f.done / f.size) * 100) : 100;
  return `${m.dir === "out" ? "encrypting and sending" : "receiving and decrypting"}: ${pct}% (${
    mib(f.done)
  } of ${mib(f.size)})`;
}

/** A file in a message: an offer, progress, the reason it stopped, or the download link and its checked SHA-256. */
export function fileBox(m: ChatMessage, f: FileItem, act: MessageActions): HTMLElement {
  const what = m.dir === "out" ? "Sending" : "Receiving";
  const pct = f.size ? Math.round((f.done / f.size) * 100) : 100;
  const parts: (HTMLElement | null)[] = [
    h(
      "span",
      { class: "file-head" },
      h("span", { class: "tag" }, "File"),
      h("strong", { class: "file-name", title: f.name }, f.name),
      h("span", { class: "file-size" }, `(${mib(f.size)})`),
    ),
  ];
  if (f.phase === "offered") {
    parts.push(
      h(
        "span",
        { class: "small muted" },
        `${act.label(m.from)} offers this file. Nothing is decrypted until you accept it.`,
      ),
      h("span", { class: "row" }, [
        h("button", {
          type: "button",
          class: "primary accept-file",
          "aria-label": `Accept ${f.name}`,
          onclick: () => act.accept(m),
        }, "Accept"),
        h("button", {
          type: "button",
          class: "decline-file",
          "aria-label": `Decline ${f.name}`,
          onclick: () => act.decline(m),
        }, "Decline"),
      ]),
    );
  } else if (f.phase === "sending" || f.phase === "receiving") {
    parts.push(
      h("progress", {
        max: 100,
        value: pct,
        class: "file-progress",
        "aria-label": `${what} ${f.name}: ${pct}%`,
      }),
      h("span", { class: "small muted progress-text" }, progressText(m, f)),
    );
  } else if (f.phase === "declined") {
    parts.push(h("span", { class: "small muted" }, "Declined: it was not decrypted."));
  } else if (f.phase === "failed") {
    parts.push(
      h(
        "span",
        { class: "error small", role: "alert" },
        `Transfer stopped: ${f.problem ?? "unknown reason"}`,
      ),
    );
  } else if (m.dir === "in") {
    const url = act.url(m);
    if (url) parts.push(h("a", { href: url, download: f.name, class: "download" }, `Download ${f.name}`));
    else if (f.kept) parts.push(h("span", { class: "small muted" }, "Opening the kept copy…"));
    parts.push(
      h("span", { class: "small muted" }, "SHA-256 checked against the sender's:"),
      h("span", { class: "small mono sha" }, f.sha256 ?? ""),
      h(
        "span",
        { class: "small muted kept", "data-kept": f.kept ? "yes" : "no" },
        f.kept
          ? "Kept (encrypted) in this browser's history."
          : f.evicted
          ? `No longer kept: this browser keeps ${mib(FILE_QUOTA)} of received files and removed the oldest.`
          : url
          ? `Not kept after this page closes (this browser keeps ${
            mib(FILE_QUOTA)
          } of received files): save it now.`
          : `Not kept in this browser (it keeps ${mib(FILE_QUOTA)} of received files).`,
      ),
    );
  } else {
    parts.push(h("span", { class: "small muted", "data-file": "sent" }, m.detail ?? "sent"));
  }
  return h("div", { class: "file", "data-phase": f.phase }, parts);
}
