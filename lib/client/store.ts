/**
 * Where a client keeps what its trust rules need across restarts (PROFILE §16): contacts with their pinned keys,
 * marks and pending changes; the key pinned for each server address (and the channel's creator key); and the
 * delivered messages already shown, so a replay after a restart is still a copy. The terminal keeps them in
 * files beside its contacts (lib/cli/contacts.ts), the web app in IndexedDB; tests use {@linkcode MemoryTrustStore}.
 * Browser-safe.
 *
 * @example
 * ```ts
 * const store = new MemoryTrustStore();
 * await store.addSeen({ key: "ab", ts: 1, verified: true });
 * (await store.load("ws://127.0.0.1:8765")).seen.length; // 1
 * ```
 * @module
 */
import { MAX_SEEN } from "./trust.ts";
import type { ClientEvent, Contact, SeenEntry, ServerPin } from "./types.ts";

/** What a store gives back when a client starts. */
export interface StoredTrust {
  /** Contacts and their pins. */
  contacts: Contact[];
  /** The key pinned for this server address, if any. */
  serverPin?: ServerPin;
  /** Messages already shown (oldest first, at most {@linkcode MAX_SEEN}). */
  seen: SeenEntry[];
  /** Verified messages dated at or before this were forgotten by the store (0: none). */
  seenFloor: number;
}

/**
 * A place to keep the trust state. Every method may be slow (disk, IndexedDB), and calls may overlap: the client
 * calls each one as the change happens, without waiting for the previous; a store applies them in call order
 * (the latest contact or pin wins) and may fold several into one write.
 */
export interface TrustStore {
  /** Everything kept for this identity, with the pin of the server at `url`. */
  load(url: string): Promise<StoredTrust>;
  /** Keep (replace) a contact. */
  saveContact(contact: Contact): Promise<void>;
  /** Keep (replace) the pin of the server at `url`. */
  saveServerPin(url: string, pin: ServerPin): Promise<void>;
  /**
   * Remember a shown message. A store keeps at most {@linkcode MAX_SEEN} entries: when it drops a verified one,
   * it raises its floor to that entry's `ts` (see {@linkcode StoredTrust.seenFloor}).
   */
  addSeen(entry: SeenEntry): Promise<void>;
}

/** Drop the oldest entries beyond `max`; returns the new floor. */
export function trimSeenEntries(entries: SeenEntry[], floor: number, max = MAX_SEEN): number {
  while (entries.length > max) {
    const e = entries.shift()!;
    if (e.verified) floor = Math.max(floor, e.ts);
  }
  return floor;
}

/** A store in memory (tests, or a session that must leave nothing behind). */
export class MemoryTrustStore implements TrustStore {
  /** Contacts by user id. */
  readonly contacts = new Map<string, Contact>();
  /** Server pins by address. */
  readonly servers = new Map<string, ServerPin>();
  /** Messages shown, oldest first. */
  readonly seen: SeenEntry[] = [];
  /** See {@linkcode StoredTrust.seenFloor}. */
  seenFloor = 0;

  /** A copy of what is kept. */
  load(url: string): Promise<StoredTrust> {
    const pin = this.servers.get(url);
    return Promise.resolve({
      contacts: [...this.contacts.values()].map((c) => structuredClone(c)),
      serverPin: pin ? { ...pin } : undefined,
      seen: this.seen.map((e) => ({ ...e })),
      seenFloor: this.seenFloor,
    });
  }

  saveContact(contact: Contact): Promise<void> {
    this.contacts.set(contact.userId, structuredClone(contact));
    return Promise.resolve();
  }

  saveServerPin(url: string, pin: ServerPin): Promise<void> {
    this.servers.set(url, { ...pin });
    return Promise.resolve();
  }

  addSeen(entry: SeenEntry): Promise<void> {
    this.seen.push({ ...entry });
    this.seenFloor = trimSeenEntries(this.seen, this.seenFloor);
    return Promise.resolve();
  }
}

/**
 * Hands the core's `contact`, `serverPin` and `seen` events to a {@linkcode TrustStore} as they happen (stores apply
 * calls in call order and may fold many into one write); a failed write becomes a warning event.
 */
export class StoreWriter {
  /** The writes not finished yet. */
  private readonly pending = new Set<Promise<void>>();

  /** A writer to `store` (none: nothing is kept) for the server at `url`; `warn` reports failed writes. */
  constructor(
    private readonly url: string,
    private readonly store: TrustStore | undefined,
    private readonly warn: (e: ClientEvent) => void,
  ) {}

  /** Write what `e` changed, if anything. */
  onEvent(e: ClientEvent): void {
    if (e.kind === "contact") this.write("a contact", (st) => st.saveContact(e.contact));
    else if (e.kind === "serverPin") {
      this.write("the server's key", (st) => st.saveServerPin(this.url, e.pin));
    } else if (e.kind === "seen") this.write("the list of messages seen", (st) => st.addSeen(e.entry));
  }

  /** Resolves once every write asked for so far is done. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private write(what: string, write: (store: TrustStore) => Promise<void>): void {
    const store = this.store;
    if (!store) return;
    let p: Promise<void>;
    try {
      p = write(store);
    } catch (err) {
      p = Promise.reject(err);
    }
    const tracked = p.catch((err) =>
      this.warn({ kind: "warning", detail: `could not save ${what}: ${(err as Error).message}` })
    ).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }
}
