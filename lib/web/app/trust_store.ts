/// <reference lib="dom" />
/**
 * The client core's trust store (PROFILE §16) in this browser: contacts with their pinned keys, marks and
 * pending changes in IndexedDB (the `contacts` store), and, sealed under the history key, our server's pinned key
 * per address and the messages already shown (so a replay, even after a reload or a restart, stays a copy).
 *
 * @module
 */
import { type StoredTrust, trimSeenEntries, type TrustStore } from "../../client/store.ts";
import type { Contact, SeenEntry, ServerPin } from "../../client/types.ts";
import type { Db } from "./db.ts";
import type { History } from "./history.ts";

interface SeenRecord {
  seen: SeenEntry[];
  floor: number;
}

/** The trust store of the leader tab. */
export class IdbTrustStore implements TrustStore {
  private seen: SeenRecord | null = null;
  /** The next write of the seen list (several entries in one write, at most every 200 ms). */
  private pending: Promise<void> | null = null;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly db: Db, private readonly history: History) {}

  async load(url: string): Promise<StoredTrust> {
    const seen = (await this.history.getSealed<SeenRecord>("trust:seen")) ?? { seen: [], floor: 0 };
    this.seen = seen;
    return {
      contacts: await this.db.contacts(),
      serverPin: await this.history.getSealed<ServerPin>(`trust:server:${url}`),
      seen: seen.seen.map((e) => ({ ...e })),
      seenFloor: seen.floor,
    };
  }

  saveContact(contact: Contact): Promise<void> {
    return this.db.saveContact(contact);
  }

  saveServerPin(url: string, pin: ServerPin): Promise<void> {
    // Calls may overlap: sealed writes go one after the other, in call order.
    const copy = { ...pin };
    this.writing = this.writing.catch(() => {}).then(() =>
      this.history.putSealed(`trust:server:${url}`, copy)
    );
    return this.writing;
  }

  addSeen(entry: SeenEntry): Promise<void> {
    const s = this.seen ??= { seen: [], floor: 0 };
    s.seen.push({ ...entry });
    s.floor = trimSeenEntries(s.seen, s.floor);
    this.pending ??= new Promise<void>((resolve, reject) => {
      setTimeout(() => {
        this.pending = null;
        const snapshot = { seen: s.seen.slice(), floor: s.floor };
        this.writing = this.writing.catch(() => {}).then(() =>
          this.history.putSealed("trust:seen", snapshot)
        );
        this.writing.then(resolve, reject);
      }, 200);
    });
    return this.pending;
  }
}
