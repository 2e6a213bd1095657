/**
 * The terminal client's contacts on disk (Deno only): `$SOCP_HOME/contacts/<name>.json`, so `/tell` reaches a
 * known user who is offline after a restart. The web app keeps the same records in IndexedDB.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import type { Contact } from "../client/types.ts";

/** The socp home folder: $SOCP_HOME, else ~/.socp. */
export function socpHome(): string {
  return Deno.env.get("SOCP_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".socp");
}

/** Where the contacts of the user whose key file is `keyPath` are kept. */
export function contactsPath(keyPath: string): string {
  return join(socpHome(), "contacts", basename(keyPath).replace(/^\.+/, "_") || "default.json");
}

/** The contacts saved at `path` ([] when there are none or the file is unreadable). */
export async function loadContacts(path: string): Promise<Contact[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return [];
  }
  try {
    const v = JSON.parse(text);
    const list = Array.isArray(v?.contacts) ? v.contacts : [];
    return list.filter((c: Contact) =>
      c && typeof c.userId === "string" && typeof c.pubkey === "string" && typeof c.name === "string"
    ).slice(0, 100_000);
  } catch {
    return [];
  }
}

/** Save `contacts` at `path` (written to a temporary file, then renamed, so a crash leaves the old list). */
export async function saveContacts(path: string, contacts: Contact[]): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify({ format: "socp-contacts/1", contacts }, null, 2) + "\n", {
    mode: 0o600,
  });
  await Deno.rename(tmp, path);
}
