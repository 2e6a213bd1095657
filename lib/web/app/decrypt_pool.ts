/**
 * Concurrent RSA-OAEP decryption in the browser: a pool of Web Workers (one per core the browser reports, at most
 * 4). Chromium runs one page's WebCrypto operations one after another, so a file's 16-block chunks decrypt on one
 * core; spread over workers they use every core. Falls back to the page's own WebCrypto when workers cannot start
 * (and for what a worker held when it failed: a lost worker must not leave a decryption waiting forever).
 *
 * The main thread stays free: ciphertexts wait in a queue and are decoded and handed to the workers a few blocks
 * at a time ({@linkcode IN_FLIGHT} per worker), each reply sending the next block, so accepting a file whose
 * 150 chunks are all here costs the page one short task per block instead of one long one for all of them.
 *
 * {@linkcode poolRunner} is the client core's crypto runner whose RSA decryptions (with our own key, and with the
 * public channel's key once opened) run on the pool; everything else runs in the page's WebCrypto.
 *
 * @module
 */
import { type CryptoRunner, WebCryptoRunner } from "../../client/client.ts";
import type { PrivateKey } from "../../crypto/rsa.ts";
import { decodeBase64Url } from "../../protocol/base64url.ts";
import { concatBytes } from "../../protocol/der.ts";

/** Blocks handed to one worker at a time (enough to keep it busy, few enough to keep the page responsive). */
export const IN_FLIGHT = 3;

/** One ciphertext (one or more blocks) waiting to be decrypted. */
interface Job {
  keyId: number;
  key: CryptoKey;
  ciphertext: string;
  k: number;
  blocks: Uint8Array[] | null;
  next: number;
  parts: Uint8Array[];
  left: number;
  failed: boolean;
  resolve: (b: Uint8Array) => void;
  reject: (e: Error) => void;
}

interface Slot {
  w: Worker;
  busy: number;
  keys: Set<number>;
}

/** A pool of decryption workers. */
export class DecryptPool {
  private readonly workers: Slot[] = [];
  private readonly sent = new Map<number, { job: Job; index: number; slot: Slot }>();
  /** Short ciphertexts (messages) go before file chunks. */
  private readonly urgent: Job[] = [];
  private readonly bulk: Job[] = [];
  private nextMsg = 1;

  /** Start `size` workers from `url`; `size` 0 (or a failure to start) means: decrypt in the page. */
  constructor(url: string, size: number) {
    for (let i = 0; i < size; i++) {
      try {
        const w = new Worker(url, { type: "module", name: `decrypt-${i}` });
        const slot: Slot = { w, busy: 0, keys: new Set<number>() };
        w.onmessage = (e) => {
          const { id, ok, data } = e.data as { id: number; ok: boolean; data?: ArrayBuffer };
          slot.busy--;
          const s = this.sent.get(id);
          this.sent.delete(id);
          if (s) this.settle(s.job, s.index, ok && data ? new Uint8Array(data) : null);
          this.pump();
        };
        // A worker that cannot start (its script did not load) or fails is dropped; the page does its blocks.
        w.onerror = (e) => (e.preventDefault(), this.lose(slot));
        w.onmessageerror = () => this.lose(slot);
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

  /** Decrypt a multi-block ciphertext (base64url; blocks of `k` bytes) with `key` (`keyId` names it). */
  decrypt(keyId: number, key: CryptoKey, ciphertext: string, k: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      (ciphertext.length <= 4 * 683 ? this.urgent : this.bulk).push({
        keyId,
        key,
        ciphertext,
        k,
        blocks: null,
        next: 0,
        parts: [],
        left: 0,
        failed: false,
        resolve,
        reject,
      });
      this.pump();
    });
  }

  private settle(job: Job, index: number, bytes: Uint8Array | null): void {
    if (job.failed) return;
    if (!bytes) {
      job.failed = true;
      return job.reject(new Error("decryption failed"));
    }
    job.parts[index] = bytes;
    if (--job.left === 0) job.resolve(concatBytes(...job.parts));
  }

  /** Worker `slot` is gone: the page decrypts what it held, and the rest goes to the others (or the page). */
  private lose(slot: Slot): void {
    const i = this.workers.indexOf(slot);
    if (i < 0) return;
    this.workers.splice(i, 1);
    try {
      slot.w.terminate();
    } catch { /* gone already */ }
    for (const [id, s] of this.sent) {
      if (s.slot !== slot) continue;
      this.sent.delete(id);
      this.inPage(s.job, s.index);
    }
    this.pump();
  }

  /** Decrypt block `index` of `job` in the page (no worker left to take it). */
  private inPage(job: Job, index: number): void {
    crypto.subtle.decrypt({ name: "RSA-OAEP" }, job.key, new Uint8Array(job.blocks![index])).then(
      (b) => this.settle(job, index, new Uint8Array(b)),
      () => this.settle(job, index, null),
    );
  }

  /** Hand blocks to workers with room, messages first, then in arrival order (to the page when none is left). */
  private pump(): void {
    for (;;) {
      const queue = this.urgent.length ? this.urgent : this.bulk;
      if (!queue.length) return;
      let slot: Slot | undefined = this.workers[0];
      for (const s of this.workers) if (s.busy < slot!.busy) slot = s;
      if (slot && slot.busy >= IN_FLIGHT) return;
      const job = queue[0];
      if (!job.blocks) {
        const bytes = decodeBase64Url(job.ciphertext);
        if (!bytes || bytes.length === 0 || bytes.length % job.k !== 0) {
          queue.shift();
          job.reject(new Error(`ciphertext must be a multiple of ${job.k} bytes`));
          continue;
        }
        job.blocks = [];
        for (let o = 0; o < bytes.length; o += job.k) job.blocks.push(bytes.subarray(o, o + job.k));
        job.left = job.blocks.length;
      }
      const index = job.next++;
      if (job.next >= job.blocks.length) queue.shift();
      if (job.failed) continue;
      if (!slot) {
        this.inPage(job, index);
        continue;
      }
      const id = this.nextMsg++;
      const buf = new Uint8Array(job.blocks[index]).buffer;
      const first = !slot.keys.has(job.keyId);
      slot.keys.add(job.keyId);
      slot.busy++;
      this.sent.set(id, { job, index, slot });
      slot.w.postMessage({ id, keyId: job.keyId, key: first ? job.key : undefined, block: buf }, [buf]);
    }
  }
}

/** The client core's crypto runner for `key` whose decryptions run on `pool` (in the page when it has no worker). */
export function poolRunner(key: PrivateKey, pool: DecryptPool): CryptoRunner {
  if (pool.size === 0) return new WebCryptoRunner(key);
  // Each key (ours, the channel's, a new channel key) gets a number: the workers keep its CryptoKey by it.
  const ids = new WeakMap<PrivateKey, number>();
  let next = 0;
  const decrypt = (k: PrivateKey, ciphertext: string): Promise<Uint8Array> => {
    let id = ids.get(k);
    if (id === undefined) ids.set(k, id = ++next);
    return pool.decrypt(id, k.cryptoKeys().decryptKey, ciphertext, k.modulusBytes);
  };
  return new WebCryptoRunner(key, { decrypt });
}
