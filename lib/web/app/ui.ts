/// <reference lib="dom" />
/**
 * Small view helpers shared by the web app's screens: a modal question, a download, a toast, and how times, sizes,
 * ids and servers are shown.
 *
 * @module
 */
import { h, replace } from "./dom.ts";

/** Offer `text` to the user as a downloaded file called `name`. */
export function download(name: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const a = h("a", { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Show `text` briefly in the toast line. */
export function toast(text: string): void {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = text;
  setTimeout(() => {
    if (t.textContent === text) t.textContent = "";
  }, 4000);
}

/** A timestamp as shown in the log: the time today, else a short date and time. */
export function time(ts: number): string {
  const d = new Date(ts);
  const same = new Date().toDateString() === d.toDateString();
  return same
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/** A byte count as B, KiB or MiB. */
export function mib(n: number): string {
  return n >= 1048576
    ? `${(n / 1048576).toFixed(2)} MiB`
    : n >= 1024
    ? `${(n / 1024).toFixed(1)} KiB`
    : `${n} B`;
}

/** A long id shortened for display. */
export function shortId(id: string): string {
  return id.length > 13 ? `${id.slice(0, 8)}…` : id;
}

/** "this server" (when `id` is `ours`) or a short server id. */
export function serverLabel(id: string, ours: string): string {
  return id && id === ours ? "this server" : `server ${shortId(id)}`;
}

/** A modal question with buttons; resolves with the label of the button pressed ("" when dismissed). */
export function ask(
  text: string,
  detail: string,
  buttons: { label: string; primary?: boolean }[],
): Promise<string> {
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
