/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The browser's IndexedDB: the identity (user id, display name, public key, the sealed key file for export, and
 * the private key as NON-extractable CryptoKeys, so script can use it but never read it), the contacts, and the
 * encrypted history (history.ts: its AES-GCM key is a non-extractable CryptoKey in the `vault` store; messages,
 * the app's state and received files are stored only as ciphertext).
 *
 * @module
 */
import type { Contact } from "../../client/types.ts";
import type { UserKeyFile } from "../../crypto/keyfile.ts";

/** The identity as stored. */
export interface StoredIdentity {
  id: "me";
  userId: string;
  displayName: string;
  /** base64url DER SPKI. */
  pubkey: string;
  spki: Uint8Array;
  signKey: CryptoKey;
  decryptKey: CryptoKey;
  /** The passphrase-sealed key file (the terminal client's format), offered for export. */
  keyFile: UserKeyFile;
}

/** Someone we talked to or saw (the client core's contact: id, name, key, fingerprint, last home server). */
export type { Contact };

const DB_NAME = "socp-chat";
const VERSION = 2;

/** The object stores (all keyed by `id` but contacts, keyed by `userId`). */
export type StoreName = "identity" | "contacts" | "vault" | "history" | "fileMeta" | "fileData";
const KEYED_BY_ID: StoreName[] = ["identity", "vault", "history", "fileMeta", "fileData"];

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error("IndexedDB request failed"));
  });
}

/** The app's database. */
export class Db {
  private constructor(private readonly db: IDBDatabase) {}

  /** Open (and create or upgrade) the database. */
  static open(): Promise<Db> {
    return new Promise((resolve, reject) => {
      const r = indexedDB.open(DB_NAME, VERSION);
      r.onupgradeneeded = () => {
        const db = r.result;
        for (const name of KEYED_BY_ID) {
          if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, { keyPath: "id" });
        }
        if (!db.objectStoreNames.contains("contacts")) {
          db.createObjectStore("contacts", { keyPath: "userId" });
        }
      };
      r.onsuccess = () => {
        // A newer version of the app in another tab wants to upgrade: let it (this tab reloads).
        r.result.onversionchange = () => {
          r.result.close();
          location.reload();
        };
        resolve(new Db(r.result));
      };
      r.onerror = () => reject(r.error ?? new Error("cannot open IndexedDB"));
      r.onblocked = () =>
        reject(new Error("the chat is open in another tab that blocks the database upgrade"));
    });
  }

  private store(name: StoreName, mode: IDBTransactionMode): IDBObjectStore {
    return this.db.transaction(name, mode).objectStore(name);
  }

  /** One record of `store` by key. */
  async get<T>(store: StoreName, key: string): Promise<T | undefined> {
    return await req(this.store(store, "readonly").get(key)) as T | undefined;
  }

  /** Every record of `store`. */
  async all<T>(store: StoreName): Promise<T[]> {
    return await req(this.store(store, "readonly").getAll()) as T[];
  }

  /** Add `rec` unless its key exists; false when it did. */
  async add(store: StoreName, rec: unknown): Promise<boolean> {
    try {
      await req(this.store(store, "readwrite").add(rec));
      return true;
    } catch (e) {
      if ((e as DOMException).name === "ConstraintError") return false;
      throw e;
    }
  }

  /** Write `puts` and delete `dels` in one transaction over `stores`. */
  write(
    stores: StoreName[],
    puts: { store: StoreName; rec: unknown }[],
    dels: { store: StoreName; key: string }[] = [],
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(stores, "readwrite");
      for (const p of puts) tx.objectStore(p.store).put(p.rec);
      for (const d of dels) tx.objectStore(d.store).delete(d.key);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB write failed"));
      tx.onabort = () => reject(tx.error ?? new Error("IndexedDB write aborted (is the disk full?)"));
    });
  }

  /** Empty the given stores. */
  async clearStores(stores: StoreName[]): Promise<void> {
    for (const s of stores) await req(this.store(s, "readwrite").clear());
  }

  /** The stored identity, if any. */
  async identity(): Promise<StoredIdentity | undefined> {
    return await req(this.store("identity", "readonly").get("me")) as StoredIdentity | undefined;
  }

  /** Store (replace) the identity. */
  async saveIdentity(id: StoredIdentity): Promise<void> {
    await req(this.store("identity", "readwrite").put(id));
  }

  /** Forget the identity, every contact, the history and its key. */
  async clear(): Promise<void> {
    await this.clearStores(["identity", "contacts", "history", "fileMeta", "fileData", "vault"]);
  }

  /** All contacts. */
  async contacts(): Promise<Contact[]> {
    return await req(this.store("contacts", "readonly").getAll()) as Contact[];
  }

  /** Add or update a contact. */
  async saveContact(c: Contact): Promise<void> {
    await req(this.store("contacts", "readwrite").put(c));
  }
}
