/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The web app's first-run screen: create an identity (an RSA-4096 key made in this browser) or import a key file.
 *
 * @module
 */
import type { Db } from "./db.ts";
import { h, replace } from "./dom.ts";
import {
  checkDisplayName,
  checkNewPassphrase,
  createIdentity,
  type Identity,
  importIdentity,
} from "./identity.ts";

/** The first-run screen: create a new identity or import a key file; `done` gets the identity opened. */
export function welcome(root: HTMLElement, db: Db, done: (id: Identity) => void): void {
  root.removeAttribute("aria-busy");
  const err = h("p", { class: "error", role: "alert", id: "welcome-error" });
  const busy = h("p", { role: "status", "aria-live": "polite", id: "welcome-status" });
  const setBusy = (on: boolean, text = "") => {
    busy.textContent = text;
    for (const b of root.querySelectorAll("button")) (b as HTMLButtonElement).disabled = on;
  };

  /** A form's submit: check, then open an identity while the buttons are disabled; show the problem if any. */
  const submitter = (
    check: () => string | null | undefined,
    busyText: string,
    open: () => Promise<Identity>,
    failed: (e: Error) => string,
  ) =>
  async (e: Event) => {
    e.preventDefault();
    err.textContent = "";
    const problem = check();
    if (problem) {
      err.textContent = problem;
      return;
    }
    setBusy(true, busyText);
    try {
      done(await open());
    } catch (e) {
      setBusy(false);
      err.textContent = failed(e as Error);
    }
  };

  const input = (id: string, attrs: Record<string, string | number>) =>
    h("input", { id, required: true, ...attrs });
  const name = input("new-name", { type: "text", autocomplete: "nickname", maxlength: 32 });
  const pass = input("new-pass", { type: "password", autocomplete: "new-password" });
  const pass2 = input("new-pass2", { type: "password", autocomplete: "new-password" });
  const create = h("form", {
    "aria-labelledby": "create-h",
    onsubmit: submitter(
      () => checkDisplayName(name.value) ?? checkNewPassphrase(pass.value, pass2.value),
      "Creating your RSA-4096 key in this browser… this can take a few seconds.",
      () => createIdentity(db, name.value, pass.value),
      (e) => `Could not create the key: ${e.message}`,
    ),
  }, [
    h("h2", { id: "create-h" }, "New here? Create your identity"),
    h("p", { class: "small muted" }, "Your key is made and kept in this browser; it never leaves it."),
    h("label", { class: "field", for: "new-name" }, h("span", {}, "Display name"), name),
    h(
      "label",
      { class: "field", for: "new-pass" },
      h("span", {}, "Passphrase (protects the key file you export)"),
      pass,
    ),
    h("label", { class: "field", for: "new-pass2" }, h("span", {}, "Passphrase again"), pass2),
    h("button", { class: "primary", type: "submit" }, "Create identity"),
  ]);

  const file = input("import-file", { type: "file", accept: ".json,application/json" });
  const ipass = input("import-pass", { type: "password", autocomplete: "current-password" });
  const imp = h("form", {
    "aria-labelledby": "import-h",
    onsubmit: submitter(
      () => {
        const f = file.files?.[0];
        if (!f) return "Choose your key file first.";
        if (f.size > 64 * 1024) return "That file is too large to be a socp key file.";
      },
      "Opening your key file…",
      async () => importIdentity(db, await file.files![0].text(), ipass.value),
      (e) => e.message,
    ),
  }, [
    h("h2", { id: "import-h" }, "Already have a socp key?"),
    h(
      "p",
      { class: "small muted" },
      "Use the key file of the terminal client (~/.socp/keys/NAME.json) or one you exported here.",
    ),
    h("label", { class: "field", for: "import-file" }, h("span", {}, "Key file"), file),
    h("label", { class: "field", for: "import-pass" }, h("span", {}, "Its passphrase"), ipass),
    h("button", { type: "submit" }, "Import identity"),
  ]);

  replace(
    root,
    h("main", { class: "welcome" }, [
      h("h1", {}, "socp chat"),
      h("p", {}, "End-to-end encrypted chat: only the people you write to can read your messages."),
      h(
        "div",
        { class: "cards" },
        h("section", { class: "card" }, create),
        h("section", { class: "card" }, imp),
      ),
      busy,
      err,
    ]),
  );
  name.focus();
}
