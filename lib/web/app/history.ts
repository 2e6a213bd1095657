/// <reference lib="dom" />
/**
 * The web app's history, encrypted at rest in IndexedDB: every message of every conversation (time, sender, state,
 * signature status, file records), the app's state (unread counts) and the contents of received
 * files up to {@linkcode FILE_QUOTA} in total (the oldest are evicted first; the app says so on each file).
 *
 * Everything is sealed with AES-GCM-256 under one key made in this browser with `extractable: false` and kept in
 * IndexedDB as a CryptoKey: script on this origin can use it, nobody can read it out, and a copy of the profile's
 * files holds only ciphertext. Each record's id is its additional data, so a record cannot be moved to another
 * slot. Record ids are random; what remains in the clear is how many records there are, their sizes, and the
 * size and time of each kept file (for eviction).
 *
 * @module
 */
import type { Db } from "./db.ts";
import type { AppState } from "./history_binding.ts";
import type { ChatMessage } from "./model.ts";

/** Received file contents kept in this browser, at most (oldest evicted first). */
export const FILE_QUOTA = 50 * 1024 * 1024;

export type { AppState } from "./history_binding.ts";

interface Sealed {
  id: string;
  iv: Uint8Array;
  ct: ArrayBuffer;
}

interface FileMeta {
  id: string;
  size: number;
  at: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The encrypted history of one browser profile. */
export class History {
  private constructor(private readonly db: Db, private readonly key: CryptoKey) {}

  /** Open the history: load its key, or make one (non-extractable) the first time. */
  static async open(db: Db): Promise<History> {
    let rec = await db.get<{ id: string; key: CryptoKey }>("vault", "key");
    if (!rec) {
      const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
        "encrypt",
        "decrypt",
      ]);
      // Two tabs may race here: the first key stored wins and both use it.
      await db.add("vault", { id: "key", key });
      rec = await db.get<{ id: string; key: CryptoKey }>("vault", "key");
      if (!rec) throw new Error("the history key could not be stored");
    }
    return new History(db, rec.key);
  }

  private async seal(id: string, data: Uint8Array): Promise<Sealed> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: enc.encode(id) },
      this.key,
      data as Uint8Array<ArrayBuffer>,
    );
    return { id, iv, ct };
  }

  private async open(r: Sealed): Promise<Uint8Array | null> {
    try {
      return new Uint8Array(
        await crypto.subtle.decrypt(
          { name: "AES-GCM", iv: new Uint8Array(r.iv), additionalData: enc.encode(r.id) },
          this.key,
          r.ct,
        ),
      );
    } catch {
      return null; // damaged or not ours: skipped
    }
  }

  /** Every stored message (unordered; damaged records are skipped) and the app state. */
  async load(): Promise<{ messages: ChatMessage[]; state: AppState }> {
    const messages: ChatMessage[] = [];
    for (const r of await this.db.all<Sealed>("history")) {
      const b = await this.open(r);
      if (!b) continue;
      try {
        const m = JSON.parse(dec.decode(b)) as ChatMessage;
        if (m && typeof m.id === "string" && typeof m.conv === "string" && typeof m.ts === "number") {
          messages.push(m);
        }
      } catch { /* skipped */ }
    }
    const state: AppState = { unread: {} };
    const s = await this.db.get<Sealed>("vault", "state");
    const b = s && await this.open(s);
    if (b) {
      try {
        // (Older states also hold a replay dedupe list: the client core's store keeps that now.)
        const v = JSON.parse(dec.decode(b)) as AppState;
        if (v && v.unread && typeof v.unread === "object") state.unread = v.unread;
      } catch { /* a fresh state */ }
    }
    return { messages, state };
  }

  /**
   * Store (replace) messages and, when given, the app state; delete the messages `removed`. Each record is sealed
   * before the one transaction opens, so two saves at once may commit out of order: the caller waits for one
   * before the next (history_binding.ts).
   */
  async save(messages: ChatMessage[], state?: AppState, removed: string[] = []): Promise<void> {
    const puts: { store: "history" | "vault"; rec: Sealed }[] = [];
    for (const m of messages) {
      const { blob: _blob, ...file } = m.file ?? {};
      const plain = m.file ? { ...m, file } : m;
      puts.push({ store: "history", rec: await this.seal(m.id, enc.encode(JSON.stringify(plain))) });
    }
    if (state) {
      puts.push({ store: "vault", rec: await this.seal("state", enc.encode(JSON.stringify(state))) });
    }
    await this.db.write(
      ["history", "vault", "fileMeta", "fileData"],
      puts,
      removed.flatMap((key) => [
        { store: "history" as const, key },
        { store: "fileMeta" as const, key },
        { store: "fileData" as const, key },
      ]),
    );
  }

  /**
   * Keep a received file's contents under message id `id`. Older files are evicted to stay within
   * {@linkcode FILE_QUOTA}; returns whether this one was kept and the message ids whose files were evicted.
   */
  async keepFile(id: string, bytes: Uint8Array, at: number): Promise<{ kept: boolean; evicted: string[] }> {
    if (bytes.length > FILE_QUOTA) return { kept: false, evicted: [] };
    const metas = (await this.db.all<FileMeta>("fileMeta")).sort((a, b) => a.at - b.at);
    let total = metas.reduce((n, m) => n + m.size, 0) + bytes.length;
    const evicted: string[] = [];
    for (const m of metas) {
      if (total <= FILE_QUOTA) break;
      evicted.push(m.id);
      total -= m.size;
    }
    const sealed = await this.seal(`file:${id}`, bytes);
    await this.db.write(
      ["fileMeta", "fileData"],
      [
        { store: "fileMeta", rec: { id, size: bytes.length, at } satisfies FileMeta },
        { store: "fileData", rec: { ...sealed, id } },
      ],
      evicted.flatMap((key) => [{ store: "fileMeta" as const, key }, { store: "fileData" as const, key }]),
    );
    return { kept: true, evicted };
  }

  /** A kept file's contents, if still kept. */
  async file(id: string): Promise<Uint8Array | null> {
    const r = await this.db.get<Sealed>("fileData", id);
    return r ? await this.open({ ...r, id: `file:${id}` }) : null;
  }

  /** Store a JSON value sealed under the history key as record `id` of the vault. */
  async putSealed(id: string, value: unknown): Promise<void> {
    const rec = await this.seal(id, enc.encode(JSON.stringify(value)));
    await this.db.write(["vault"], [{ store: "vault", rec }]);
  }

  /** A value stored with {@linkcode putSealed}, if any (undefined when missing or damaged). */
  async getSealed<T>(id: string): Promise<T | undefined> {
    const r = await this.db.get<Sealed>("vault", id);
    const b = r && await this.open(r);
    if (!b) return undefined;
    try {
      return JSON.parse(dec.decode(b)) as T;
    } catch {
      return undefined;
    }
  }

  /** Delete every message, kept file and the state (the key stays). */
  async wipe(): Promise<void> {
    await this.db.clearStores(["history", "fileMeta", "fileData"]);
    await this.db.write(["vault"], [], [{ store: "vault", key: "state" }]);
  }
}
