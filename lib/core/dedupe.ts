/**
 * The seen cache of SOCP §7.2 / PROFILE §11: keys `ts|from|to|sha256(canonical payload)`, kept for a TTL,
 * bounded in size (oldest evicted first). Time comes in as arguments.
 *
 * @example
 * ```ts
 * const seen = new SeenCache(600_000, 1000);
 * seen.add("k", 0); // true (new)
 * seen.add("k", 1); // false (duplicate)
 * ```
 * @module
 */

/** A bounded, expiring set of frame keys. */
export class SeenCache {
  private readonly entries = new Map<string, number>();

  /** Entries live `ttlMs`; at most `max` are kept (the oldest is evicted first). */
  constructor(readonly ttlMs: number, readonly max: number) {}

  /** A cache holding `entries` ([key, expiry]) kept from before a restart (expired ones are skipped later). */
  static restored(ttlMs: number, max: number, entries: Iterable<[string, number]>): SeenCache {
    const c = new SeenCache(ttlMs, max);
    for (const [k, exp] of entries) c.entries.set(k, exp);
    return c;
  }

  /** The standard's cache key of a frame (SOCP §7.2): envelope fields and the payload digest. */
  static key(ts: number, from: string, to: string, digestHex: string): string {
    return `${ts}|${from}|${to}|${digestHex}`;
  }

  /**
   * PROFILE §16: the key of a frame judged on what is signed, never on envelope fields: its type, the server that
   * originated it ("" for a user's frame re-signed by each forwarder: its payload is unique by its `content_sig`,
   * ciphertext or file id) and the digest of its canonical payload.
   */
  static payloadKey(type: string, origin: string, digestHex: string): string {
    return `${type}|${origin}|${digestHex}`;
  }

  /** Record `key` (until `until`, default now + TTL); true when it was not already present (and unexpired). */
  add(key: string, now: number, until = now + this.ttlMs): boolean {
    const exp = this.entries.get(key);
    if (exp !== undefined && exp > now) return false;
    if (exp !== undefined) this.entries.delete(key);
    this.entries.set(key, Math.max(until, now + this.ttlMs));
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return true;
  }

  /** True when `key` is present and unexpired (does not record it). */
  has(key: string, now: number): boolean {
    const exp = this.entries.get(key);
    return exp !== undefined && exp > now;
  }

  /** Drop expired entries (insertion order is about expiry order, so this stops at the first live one). */
  expire(now: number): void {
    for (const [k, exp] of this.entries) {
      if (exp > now) break;
      this.entries.delete(k);
    }
  }

  /**
   * When {@linkcode SeenCache.expire} next drops something: the expiry of the oldest entry (the one it looks at
   * first), or Infinity when the cache is empty.
   */
  nextExpiry(): number {
    for (const exp of this.entries.values()) return exp;
    return Infinity;
  }

  /** Number of keys held. */
  get size(): number {
    return this.entries.size;
  }
}
