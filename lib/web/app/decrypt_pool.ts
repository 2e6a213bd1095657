/**
 * Concurrent RSA-OAEP decryption in the browser: a pool of Web Workers (one per core the browser reports, at most
 * 4). Chromium runs one page's WebCrypto operations one after another, so a file's 16-block chunks decrypt on one
 * core; spread over workers they use every core. Falls back to the page's own WebCrypto when workers cannot start.
 *
 * {@linkcode usePool} makes a {@linkcode PrivateKey}'s `decrypt` use the pool; everything else about the key is
 * unchanged (the client core and its runner call `decrypt` as before).
 *
 * @module
 */
import type { PrivateKey } from "../../crypto/rsa.ts";
import { decodeBase64Url } from "../../protocol/base64url.ts";
import { concatBytes } from "../../protocol/der.ts";

interface Job {
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
}

/** A pool of decryption workers. */
export class DecryptPool {
  private readonly workers: { w: Worker; busy: number; keys: Set<number> }[] = [];
  private readonly jobs = new Map<number, Job>();
  private nextJob = 1;

  /** Start `size` workers from `url`; `size` 0 (or a failure to start) means: decrypt in the page. */
  constructor(url: string, size: number) {
    for (let i = 0; i < size; i++) {
      try {
        const w = new Worker(url, { type: "module", name: `decrypt-${i}` });
        const slot = { w, busy: 0, keys: new Set<number>() };
        w.onmessage = (e) => {
          const { id, ok, data } = e.data as { id: number; ok: boolean; data?: ArrayBuffer };
          slot.busy--;
          const j = this.jobs.get(id);
          this.jobs.delete(id);
          if (!j) return;
          if (ok && data) j.resolve(new Uint8Array(data));
          else j.reject(new Error("decryption failed"));
        };
        this.workers.push(slot);
      } catch {
        break;
      }
    }
  }

  /** How many workers run. */
  get size(): number {
    return this.workers.length;
  }

  /** Decrypt one block with `key` (`keyId` names it to the workers). */
  block(keyId: number, key: CryptoKey, block: Uint8Array): Promise<Uint8Array> {
    if (this.workers.length === 0) {
      return crypto.subtle.decrypt({ name: "RSA-OAEP" }, key, new Uint8Array(block)).then((b) =>
        new Uint8Array(b)
      );
    }
    let slot = this.workers[0];
    for (const s of this.workers) if (s.busy < slot.busy) slot = s;
    const id = this.nextJob++;
    const buf = new Uint8Array(block).buffer;
    const first = !slot.keys.has(keyId);
    slot.keys.add(keyId);
    slot.busy++;
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      slot.w.postMessage({ id, keyId, key: first ? key : undefined, block: buf }, [buf]);
    });
  }
}

let keyIds = 0;

/** Make `key.decrypt` run its blocks on `pool` (same result and errors as before). */
export function usePool(key: PrivateKey, pool: DecryptPool): void {
  if (pool.size === 0) return;
  const { decryptKey } = key.cryptoKeys();
  const keyId = ++keyIds;
  const k = key.modulusBytes;
  key.decrypt = async (ciphertext: string): Promise<Uint8Array> => {
    const bytes = decodeBase64Url(ciphertext);
    if (!bytes || bytes.length === 0 || bytes.length % k !== 0) {
      throw new Error(`ciphertext must be a multiple of ${k} bytes`);
    }
    const parts: Promise<Uint8Array>[] = [];
    for (let o = 0; o < bytes.length; o += k) {
      parts.push(pool.block(keyId, decryptKey, bytes.subarray(o, o + k)));
    }
    return concatBytes(...(await Promise.all(parts)));
  };
}
