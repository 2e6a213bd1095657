/**
 * The terminal client's contacts and trust state on disk (Deno only), a {@linkcode TrustStore} over two files:
 *
 * - `$SOCP_HOME/contacts/<name>.json`: the contacts with their pinned keys, "verified" marks and pending key
 *   changes (so `/tell` reaches a known user who is offline after a restart, and a key change still blocks after
 *   one), and `servers`: the key pinned for each server address, with its channel's creator key;
 * - `$SOCP_HOME/contacts/<name>.seen`: the delivered messages already shown, one line each (`key ts v|u`),
 *   appended as they are shown and compacted to the newest 10,000 (a first line `floor <ts>` keeps the date of
 *   the newest verified one forgotten), so a replay after a restart is not shown again.
 *
 * The web app keeps the same records in IndexedDB.
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { type StoredTrust, trimSeenEntries, type TrustStore } from "../client/store.ts";
import { MAX_SEEN } from "../client/trust.ts";
import type { Contact, SeenEntry, ServerPin } from "../client/types.ts";

/** The socp home folder: $SOCP_HOME, else ~/.socp. */
export function socpHome(): string {
  return Deno.env.get("SOCP_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".socp");
}

/** Where the contacts of the user whose key file is `keyPath` are kept. */
export function contactsPath(keyPath: string): string {
  return join(socpHome(), "contacts", basename(keyPath).replace(/^\.+/, "_") || "default.json");
}

/** Where the messages already shown by the user whose contacts are at `contactsFile` are remembered. */
export function seenPath(contactsFile: string): string {
  return contactsFile.replace(/\.json$/, "") + ".seen";
}

/** The contacts file's content. */
interface ContactsFile {
  contacts: Contact[];
  servers: Record<string, ServerPin>;
}

async function readContactsFile(path: string): Promise<ContactsFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return { contacts: [], servers: {} };
  }
  try {
    const v = JSON.parse(text);
    const list = Array.isArray(v?.contacts) ? v.contacts : [];
    const contacts = list.filter((c: Contact) =>
      c && typeof c.userId === "string" && typeof c.pubkey === "string" && typeof c.name === "string"
    ).slice(0, 100_000);
    const servers: Record<string, ServerPin> = {};
    if (v?.servers && typeof v.servers === "object" && !Array.isArray(v.servers)) {
      for (const [url, pin] of Object.entries(v.servers as Record<string, ServerPin>)) {
        if (pin && typeof pin.pubkey === "string" && typeof pin.serverId === "string") servers[url] = pin;
      }
    }
    return { contacts, servers };
  } catch {
    return { contacts: [], servers: {} };
  }
}

/** Write a file through a temporary file and a rename (a crash leaves the old one). */
async function replaceFile(path: string, text: string): Promise<void> {
  await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, text, { mode: 0o600 });
  await Deno.rename(tmp, path);
}

/** The contacts saved at `path` ([] when there are none or the file is unreadable). */
export async function loadContacts(path: string): Promise<Contact[]> {
  return (await readContactsFile(path)).contacts;
}

/** Save `contacts` (and server pins) at `path` (written to a temporary file, then renamed). */
export async function saveContacts(
  path: string,
  contacts: Contact[],
  servers: Record<string, ServerPin> = {},
): Promise<void> {
  await replaceFile(path, JSON.stringify({ format: "socp-contacts/1", contacts, servers }, null, 2) + "\n");
}

/** Parse the seen file's text: entries oldest first (at most {@linkcode MAX_SEEN}) and the floor. */
export function parseSeen(text: string): { entries: SeenEntry[]; floor: number; lines: number } {
  const entries: SeenEntry[] = [];
  let floor = 0, lines = 0;
  for (const line of text.split("\n")) {
    if (!line) continue;
    lines++;
    const f = line.split(" ");
    if (f.length === 2 && f[0] === "floor" && /^\d{1,16}$/.test(f[1])) floor = Math.max(floor, Number(f[1]));
    else if (
      f.length === 3 && /^[0-9a-f]{32}$/.test(f[0]) && /^-?\d{1,16}$/.test(f[1]) && /^[vu]$/.test(f[2])
    ) {
      entries.push({ key: f[0], ts: Number(f[1]), verified: f[2] === "v" });
    }
  }
  floor = trimSeenEntries(entries, floor);
  return { entries, floor, lines };
}

/** The terminal's {@linkcode TrustStore}: the contacts file and the seen file of one identity. */
export class FileTrustStore implements TrustStore {
  private file: ContactsFile = { contacts: [], servers: {} };
  private readonly byId = new Map<string, Contact>();
  private seen: SeenEntry[] = [];
  private floor = 0;
  private seenLines = 0;
  private loaded = false;

  /** A store over `contactsFile` (from {@linkcode contactsPath}) and the seen file beside it. */
  constructor(readonly contactsFile: string) {}

  async load(url: string): Promise<StoredTrust> {
    if (!this.loaded) {
      this.file = await readContactsFile(this.contactsFile);
      for (const c of this.file.contacts) this.byId.set(c.userId, c);
      let text = "";
      try {
        text = await Deno.readTextFile(seenPath(this.contactsFile));
      } catch { /* none yet */ }
      const p = parseSeen(text);
      this.seen = p.entries;
      this.floor = p.floor;
      this.seenLines = p.lines;
      this.loaded = true;
    }
    return {
      contacts: [...this.byId.values()],
      serverPin: this.file.servers[url],
      seen: [...this.seen],
      seenFloor: this.floor,
    };
  }

  async saveContact(contact: Contact): Promise<void> {
    this.byId.set(contact.userId, contact);
    await this.writeContacts();
  }

  async saveServerPin(url: string, pin: ServerPin): Promise<void> {
    this.file.servers[url] = pin;
    await this.writeContacts();
  }

  addSeen(entry: SeenEntry): Promise<void> {
    this.seen.push(entry);
    this.floor = trimSeenEntries(this.seen, this.floor);
    // One file operation at a time: an append must not race a compaction.
    this.seenChain = this.seenChain.catch(() => {}).then(() => this.writeSeen(entry));
    return this.seenChain;
  }

  private seenChain: Promise<void> = Promise.resolve();

  private async writeSeen(entry: SeenEntry): Promise<void> {
    const path = seenPath(this.contactsFile);
    if (this.seenLines + 1 > 2 * MAX_SEEN) {
      const lines = [
        `floor ${this.floor}`,
        ...this.seen.map((e) => `${e.key} ${e.ts} ${e.verified ? "v" : "u"}`),
      ];
      await replaceFile(path, lines.join("\n") + "\n");
      this.seenLines = lines.length;
      return;
    }
    await Deno.mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(path, `${entry.key} ${entry.ts} ${entry.verified ? "v" : "u"}\n`, {
      append: true,
      mode: 0o600,
    });
    this.seenLines++;
  }

  /** The contacts file write under way (or done). */
  private current: Promise<void> = Promise.resolve();
  /** The next write, not started yet: every change asked for until it starts is in it. */
  private next: Promise<void> | null = null;

  /** Write the contacts file; the changes of many calls in a row go out in one write. */
  private writeContacts(): Promise<void> {
    if (this.next) return this.next;
    const next = this.current.catch(() => {}).then(() => {
      this.next = null;
      return saveContacts(this.contactsFile, [...this.byId.values()], this.file.servers);
    });
    this.next = next;
    this.current = next;
    return next;
  }
}
