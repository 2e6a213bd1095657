/**
 * Signs server frames, once per distinct payload: concurrent requests for the same canonical payload share one
 * RSA operation, and a small LRU keeps recent signatures (re-sent adverts cost nothing).
 *
 * @module
 */
import type { PrivateKey } from "../crypto/rsa.ts";
import { sha256Hex } from "../crypto/rsa.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";

/** A caching PSS signer for payloads. */
export class Signer {
  private readonly cache = new Map<string, Promise<string>>();
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
}
