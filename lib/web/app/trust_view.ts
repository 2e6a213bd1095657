/// <reference lib="dom" />
/**
 * What the web app shows about keys (PROFILE §16): the trust mark beside a contact's name, the warning in a
 * conversation whose contact presented a new key (sending is blocked until the user accepts it), the warning
 * when our server presents another key, and the safety code dialog where a contact is marked verified.
 *
 * @module
 */
import { h, replace } from "./dom.ts";
import type { KeysView, TrustView } from "./model.ts";
import type { Session } from "./session.ts";
import { ask } from "./ui.ts";

/** The mark beside a conversation's title: how far its contact's key is trusted. */
export function trustMark(t: TrustView): HTMLElement {
  return h(
    "span",
    { class: `trust trust-${t.trust}`, id: "trust-mark", "data-trust": t.trust },
    t.trust === "verified"
      ? "✓ verified"
      : t.trust === "derived"
      ? "✓ key matches id"
      : t.trust === "changed"
      ? "⚠ key changed"
      : "not verified",
  );
}

/** The warning shown in a conversation whose contact presented a new key. */
export function keyWarning(s: Session, userId: string, t: TrustView): HTMLElement {
  const label = s.people.label(userId);
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

/** The warning in the public channel when our server presents another key than the pinned one. */
export function serverKeyWarning(s: Session, keys: KeysView): HTMLElement {
  return h("div", { class: "key-warning", role: "alert", id: "server-key-warning" }, [
    h(
      "p",
      {},
      `⚠ Your server presents a different key than the one pinned at first contact: pinned ${keys.server}, ` +
        `now ${keys.serverPending}. Public channel keys from it are refused until you accept it.`,
    ),
    h("button", { type: "button", onclick: () => s.trustServerKey() }, "Accept the server's new key"),
  ]);
}

/** The safety code panel of a conversation: both fingerprints, the code, and the "verified" mark. */
export function openSafety(s: Session, userId: string): void {
  const t = s.people.trustOf(userId);
  const d = h("dialog", { id: "safety", "aria-labelledby": "safety-h" });
  const close = () => {
    d.close();
    d.remove();
  };
  if (!t) return;
  const label = s.people.label(userId);
  replace(d, [
    h("h2", { id: "safety-h" }, `Safety code with ${label}`),
    h(
      "p",
      { class: "small" },
      `Compare these digits with what ${label} sees on their device (in person or on a call). ` +
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
