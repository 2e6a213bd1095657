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

  /** The cache key of a frame. */
  static key(ts: number, from: string, to: string, digestHex: string): string {
    return `${ts}|${from}|${to}|${digestHex}`;
  }

  /** Record `key`; true when it was not already present (and unexpired). */
  add(key: string, now: number): boolean {
    const exp = this.entries.get(key);
    if (exp !== undefined && exp > now) return false;
    if (exp !== undefined) this.entries.delete(key);
    this.entries.set(key, now + this.ttlMs);
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return true;
  }

  /** True when `key` is present and unexpired (does not record it). */
  has(key: string, now: number): boolean {
    const exp = this.entries.get(key);
    return exp !== undefined && exp > now;
  }

  /** Drop expired entries (insertion order is expiry order, so this stops at the first live one). */
  expire(now: number): void {
    for (const [k, exp] of this.entries) {
      if (exp > now) break;
      this.entries.delete(k);
    }
  }

  /** Number of keys held. */
  get size(): number {
    return this.entries.size;
  }
}
