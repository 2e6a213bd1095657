/**
 * Per-connection limits of PROFILE §11: token bucket, freshness window, connections per address.
 *
 * @module
 */
import { sweepBy } from "./state.ts";
import type { Conn, Limits, State } from "./types.ts";

/** Server links carry many users' traffic: their token bucket is this many times a user's. */
export const SERVER_LINK_SCALE = 10;

/** The token bucket of a connection: PROFILE §11's for users, scaled up for server links. */
export function bucket(conn: Conn, limits: Limits): { ratePerSec: number; burst: number } {
  const scale = conn.role === "server" ? SERVER_LINK_SCALE : 1;
  return { ratePerSec: limits.ratePerSec * scale, burst: limits.rateBurst * scale };
}

/** Take one token from the connection's bucket; false when it is empty. */
export function takeToken(conn: Conn, limits: Limits, now: number): boolean {
  const { ratePerSec, burst } = bucket(conn, limits);
  const elapsed = Math.max(0, now - conn.refilledAt);
  conn.tokens = Math.min(burst, conn.tokens + (elapsed * ratePerSec) / 1000);
  conn.refilledAt = Math.max(conn.refilledAt, now); // never backwards: a late, older timestamp must not mint tokens
  if (conn.tokens < 1) return false;
  conn.tokens -= 1;
  return true;
}

/** Token buckets per remote address (entries go once full again). */
type AddrBuckets = Map<string, { tokens: number; refilledAt: number }>;

/** When a bucket refilled at `perMs` tokens a millisecond is full (`burst`) again. */
function fullAt(b: { tokens: number; refilledAt: number }, perMs: number, burst: number): number {
  const missing = burst - b.tokens;
  return missing <= 0 ? b.refilledAt : b.refilledAt + Math.ceil(missing / perMs);
}

/**
 * Take one token for `addr` from `buckets` refilled at `perMs` tokens a millisecond up to `burst` (the clock
 * sweeps the bucket once it is full again).
 */
function takeAddrToken(
  state: State,
  buckets: AddrBuckets,
  addr: string,
  now: number,
  perMs: number,
  burst: number,
): boolean {
  const b = buckets.get(addr) ?? { tokens: burst, refilledAt: now };
  b.tokens = Math.min(burst, b.tokens + Math.max(0, now - b.refilledAt) * perMs);
  b.refilledAt = Math.max(b.refilledAt, now);
  buckets.set(addr, b);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  sweepBy(state, fullAt(b, perMs, burst));
  return true;
}

/** When the first of `buckets` is full again (so {@linkcode forgetFull} drops it); Infinity when there is none. */
function firstFull(buckets: AddrBuckets, perMs: number, burst: number): number {
  let first = Infinity;
  for (const b of buckets.values()) first = Math.min(first, fullAt(b, perMs, burst));
  return first;
}

/** Drop the buckets that have refilled (a full bucket is the same as none). */
function forgetFull(buckets: AddrBuckets, now: number, perMs: number, burst: number): void {
  for (const [addr, b] of buckets) {
    if (b.tokens + Math.max(0, now - b.refilledAt) * perMs >= burst) buckets.delete(addr);
  }
}

/**
 * Take one USER_HELLO token for `addr` (PROFILE §11 extension: hellos per address). Admission costs the node
 * RSA work (an advert, a channel key share), so one address may only start so many sessions per second.
 */
export function takeHelloToken(state: State, addr: string, now: number): boolean {
  const { helloPerSec, helloBurst } = state.config.limits;
  return takeAddrToken(state, state.helloBuckets, addr, now, helloPerSec / 1000, helloBurst);
}

/**
 * Take one SERVER_HELLO_JOIN token for `addr` (PROFILE §16: open federation is not free to abuse). Each admitted
 * JOIN costs a signature and a channel-key wrap, so one address may join only so often.
 */
export function takeJoinToken(state: State, addr: string, now: number): boolean {
  const { joinPerMin, joinBurst } = state.config.limits;
  return takeAddrToken(state, state.joinBuckets, addr, now, joinPerMin / 60_000, joinBurst);
}

/** Drop the hello and JOIN buckets that have refilled (a full bucket is the same as none). */
export function forgetFullHelloBuckets(state: State, now: number): void {
  const { helloPerSec, helloBurst, joinPerMin, joinBurst } = state.config.limits;
  forgetFull(state.helloBuckets, now, helloPerSec / 1000, helloBurst);
  forgetFull(state.joinBuckets, now, joinPerMin / 60_000, joinBurst);
}

/** When {@linkcode forgetFullHelloBuckets} next drops a bucket; Infinity when no bucket is held. */
export function helloBucketsFullAt(state: State): number {
  const { helloPerSec, helloBurst, joinPerMin, joinBurst } = state.config.limits;
  return Math.min(
    firstFull(state.helloBuckets, helloPerSec / 1000, helloBurst),
    firstFull(state.joinBuckets, joinPerMin / 60_000, joinBurst),
  );
}

/** `null` when `ts` is within the freshness window, else the reason. */
export function staleness(ts: number, now: number, limits: Limits): string | null {
  const skew = Math.abs(now - ts);
  if (skew <= limits.freshnessMs) return null;
  return `frame ts is ${Math.round(skew / 1000)} s from the server clock (limit ${
    Math.round(limits.freshnessMs / 1000)
  } s)`;
}
