/// <reference lib="dom" />
/**
 * The web app's account dialog: who this identity is, exporting its key file, notifications, deleting the
 * history, and signing out.
 *
 * @module
 */
import { h, replace } from "./dom.ts";
import { keyFileText } from "./identity.ts";
import type { Session } from "./session.ts";
import { ask, download, toast } from "./ui.ts";

/** Ask the browser to show notifications; `redraw` once it answered. */
export async function askNotifications(redraw: () => void): Promise<void> {
  if (typeof Notification !== "function") return toast("This browser has no notifications.");
  const p = await Notification.requestPermission();
  toast(
    p === "granted"
      ? "Notifications on: you are told of new messages while this tab is hidden."
      : "Notifications are blocked for this site (the browser's site settings can allow them).",
  );
  redraw();
}

/** Open the account dialog `d` of session `s`. */
export function openAccount(d: HTMLDialogElement, s: Session, redraw: () => void): void {
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
      h("button", { type: "button", id: "export-key", onclick: () => exportKey(s) }, "Export key"),
      perm === "default"
        ? h("button", {
          type: "button",
          id: "enable-notifications",
          onclick: () => askNotifications(redraw),
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
      h("button", { type: "button", id: "sign-out", onclick: () => signOut(s) }, "Sign out…"),
    ]),
    h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")),
  ]);
  if (!d.open) d.showModal();
}

function exportKey(s: Session): void {
  download(`${s.me.displayName.replace(/[^\w.-]+/g, "_") || "me"}.json`, keyFileText(s.me));
  toast("Key file saved. It is sealed with your passphrase; keep both.");
}

async function signOut(s: Session): Promise<void> {
  for (;;) {
    const r = await ask(
      "Sign out of this browser?",
      "Your key, contacts and history are deleted from this browser (all its tabs). To use this identity again, " +
        "here or elsewhere, you need its key file: export it first.",
      [{ label: "Export key first" }, { label: "Sign out and delete", primary: true }],
    );
    if (r === "Export key first") {
      exportKey(s);
      continue;
    }
    if (r !== "Sign out and delete") return;
    await s.signOut();
    location.reload();
    return;
  }
}
