/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The browser's IndexedDB: the identity (user id, display name, public key, the sealed key file for export, and
 * the private key as NON-extractable CryptoKeys, so script can use it but never read it) and the contacts.
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
      const r = indexedDB.open(DB_NAME, 1);
      r.onupgradeneeded = () => {
        const db = r.result;
        if (!db.objectStoreNames.contains("identity")) db.createObjectStore("identity", { keyPath: "id" });
        if (!db.objectStoreNames.contains("contacts")) {
          db.createObjectStore("contacts", { keyPath: "userId" });
        }
      };
      r.onsuccess = () => resolve(new Db(r.result));
      r.onerror = () => reject(r.error ?? new Error("cannot open IndexedDB"));
      r.onblocked = () =>
        reject(new Error("the chat is open in another tab that blocks the database upgrade"));
    });
  }

  private store(name: "identity" | "contacts", mode: IDBTransactionMode): IDBObjectStore {
    return this.db.transaction(name, mode).objectStore(name);
  }

  /** The stored identity, if any. */
  async identity(): Promise<StoredIdentity | undefined> {
    return await req(this.store("identity", "readonly").get("me")) as StoredIdentity | undefined;
  }

  /** Store (replace) the identity. */
  async saveIdentity(id: StoredIdentity): Promise<void> {
    await req(this.store("identity", "readwrite").put(id));
  }

  /** Forget the identity and every contact. */
  async clear(): Promise<void> {
    await req(this.store("identity", "readwrite").clear());
    await req(this.store("contacts", "readwrite").clear());
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
