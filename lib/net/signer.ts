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
  /** Wire texts by frame object: signed by us, and as received (relayed with their own sig). */
  private readonly texts = [new WeakMap<object, Promise<string>>(), new WeakMap<object, Promise<string>>()];
  /** RSA signatures actually computed. */
  signatures = 0;

  constructor(private readonly key: PrivateKey, private readonly max = 1024) {}

  /** The signature over the canonical form of `payload`. */
  async sign(payload: unknown): Promise<string> {
    const canon = canonicalJson(payload);
    const k = await sha256Hex(canon);
    const hit = this.cache.get(k);
    if (hit) return hit;
    this.signatures++;
    const p = this.key.sign(new TextEncoder().encode(canon));
    this.cache.set(k, p);
    if (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value!);
    p.catch(() => this.cache.delete(k));
    return p;
  }

  /**
   * The wire text of `frame`: signed with our key when `sign`, else as it is (its own `sig`). Computed once per
   * frame object and kept while the caller holds the object; the frame must not be changed after it is sent.
   */
  text(frame: Envelope, sign: boolean): Promise<string> {
    const texts = this.texts[sign ? 0 : 1];
    const hit = texts.get(frame);
    if (hit) return hit;
    const p = sign
      ? this.sign(frame.payload).then((sig) => serializeEnvelope({ ...frame, sig }))
      : Promise.resolve().then(() => serializeEnvelope(frame));
    texts.set(frame, p);
    p.catch(() => texts.delete(frame));
    return p;
  }
}
