/**
 * Signs server frames, once per distinct payload: concurrent requests for the same canonical payload share one
 * RSA operation, and a small LRU keeps recent signatures (re-sent identical payloads cost nothing).
 *
 * A frame object the reducer keeps and sends again and again (a local user's USER_ADVERTISE, sent to every
 * newcomer for as long as that user is online; a broadcast sent to every user) is signed and serialized once:
 * its wire text is kept in a `WeakMap` keyed by the frame object, so it lives exactly as long as the reducer holds
 * the frame, and the shared LRU cannot be thrashed by many users online.
 *
 * @example
 * ```ts
 * import { generateKeyPair } from "../crypto/rsa.ts";
 * import type { Envelope } from "../protocol/envelope.ts";
 * const signer = new Signer(await generateKeyPair(2048));
 * const frame: Envelope = { type: "HEARTBEAT", from: "server-1", to: "*", ts: Date.now(), payload: {} };
 * const text = await signer.text(frame, true); // signed once per frame object
 * ```
 * @module
 */
import type { PrivateKey } from "../crypto/rsa.ts";
import { sha256Hex } from "../crypto/rsa.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { type Envelope, serializeEnvelope } from "../protocol/envelope.ts";

/** A caching PSS signer for payloads. */
export class Signer {
  private readonly cache = new Map<string, Promise<string>>();
  /** Signatures already computed, by payload digest (the same LRU entries as `cache`, resolved). */
  private readonly done = new Map<string, string>();
  /**
   * Wire texts by frame object: signed by us over the canonical form, as received (relayed with their own sig),
   * and signed by us over the spaced form (PROFILE §15, for peers that verify only that).
   */
  private readonly texts = [0, 1, 2].map(() => new WeakMap<object, Promise<string>>());
  /** Wire texts already serialized, by frame object (what `textNow` answers from). */
  private readonly ready = [0, 1, 2].map(() => new WeakMap<object, string>());
  /** RSA signatures actually computed. */
  signatures = 0;

  /**
   * @param key signs (RSA-PSS).
   * @param max how many signatures the LRU keeps.
   * @param digestHex a synchronous SHA-256 (hex) for the cache key; without one, WebCrypto's (asynchronous), and
   *   {@linkcode Signer.textNow} can answer only frames already serialized.
   */
  constructor(
    private readonly key: PrivateKey,
    private readonly max = 1024,
    private readonly digestHex?: (text: string) => string,
  ) {}

  /** The signature over the canonical form of `payload` (the spaced form of PROFILE §15 when `spaced`). */
  sign(payload: unknown, spaced = false): Promise<string> {
    const canon = canonicalJson(payload, { spaced });
    if (this.digestHex) return this.signCanon(canon, this.digestHex(canon));
    return sha256Hex(canon).then((k) => this.signCanon(canon, k));
  }

  private signCanon(canon: string, k: string): Promise<string> {
    const hit = this.cache.get(k);
    if (hit) {
      this.cache.delete(k); // refresh its LRU position: a payload signed again and again (the hello ACK) stays
      this.cache.set(k, hit);
      return hit;
    }
    this.signatures++;
    const p = this.key.sign(new TextEncoder().encode(canon));
    this.cache.set(k, p);
    if (this.cache.size > this.max) {
      const old = this.cache.keys().next().value!;
      this.cache.delete(old);
      this.done.delete(old);
    }
    p.then((sig) => {
      if (this.cache.get(k) === p) this.done.set(k, sig);
    }, () => this.cache.delete(k));
    return p;
  }

  /**
   * The wire text of `frame`: signed with our key when `sign`, else as it is (its own `sig`). Computed once per
   * frame object and kept while the caller holds the object; the frame must not be changed after it is sent.
   */
  text(frame: Envelope, sign: boolean, spaced = false): Promise<string> {
    const i = slot(sign, spaced);
    const hit = this.texts[i].get(frame);
    if (hit) return hit;
    const done = this.ready[i].get(frame); // serialized by textNow
    return done !== undefined ? Promise.resolve(done) : this.start(frame, sign, spaced);
  }

  /**
   * The wire text of `frame` now, when it needs no new signature: a frame already serialized, a frame to send as
   * it is, or (with a synchronous digest) a payload whose signature is cached. Otherwise `undefined`, and the
   * signature is under way: use {@linkcode Signer.text}. A node sends such frames at once (an ACK, the snapshot
   * of adverts) instead of after a promise turn per frame.
   */
  textNow(frame: Envelope, sign: boolean, spaced = false): string | undefined {
    const i = slot(sign, spaced);
    const done = this.ready[i].get(frame);
    if (done !== undefined) return done;
    if (this.texts[i].has(frame)) return undefined; // being signed: wait for it
    if (!sign) {
      const t = serializeEnvelope(frame);
      this.ready[i].set(frame, t);
      return t;
    }
    if (!this.digestHex) return undefined;
    const canon = canonicalJson(frame.payload, { spaced });
    const k = this.digestHex(canon);
    const sig = this.done.get(k);
    if (sig === undefined) {
      this.start(frame, true, spaced, canon, k);
      return undefined;
    }
    const p = this.cache.get(k)!; // `done` holds only keys `cache` holds: refresh its LRU position
    this.cache.delete(k);
    this.cache.set(k, p);
    const t = serializeEnvelope({ ...frame, sig });
    this.ready[i].set(frame, t);
    return t;
  }

  private start(
    frame: Envelope,
    sign: boolean,
    spaced: boolean,
    canon?: string,
    k?: string,
  ): Promise<string> {
    const i = slot(sign, spaced);
    const p = !sign
      ? Promise.resolve().then(() => serializeEnvelope(frame))
      : (canon !== undefined && k !== undefined ? this.signCanon(canon, k) : this.sign(frame.payload, spaced))
        .then((sig) => serializeEnvelope({ ...frame, sig }));
    this.texts[i].set(frame, p);
    p.then((t) => this.ready[i].set(frame, t), () => this.texts[i].delete(frame));
    return p;
  }
}

/** The cache slot of a wire text: signed canonically, as received, or signed spaced. */
function slot(sign: boolean, spaced: boolean): number {
  return !sign ? 1 : spaced ? 2 : 0;
}
