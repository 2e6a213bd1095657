/**
 * Per-connection limits of PROFILE §11: token bucket, freshness window, connections per address.
 *
 * @module
 */
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

/**
 * Take one USER_HELLO token for `addr` (PROFILE §11 extension: hellos per address). Admission costs the node
 * RSA work (an advert, a channel key share), so one address may only start so many sessions per second.
 */
export function takeHelloToken(state: State, addr: string, now: number): boolean {
  const { helloPerSec, helloBurst } = state.config.limits;
  const b = state.helloBuckets.get(addr) ?? { tokens: helloBurst, refilledAt: now };
  b.tokens = Math.min(helloBurst, b.tokens + (Math.max(0, now - b.refilledAt) * helloPerSec) / 1000);
  b.refilledAt = Math.max(b.refilledAt, now);
  state.helloBuckets.set(addr, b);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

/**
 * Take one SERVER_HELLO_JOIN token for `addr` (PROFILE §16: open federation is not free to abuse). Each admitted
 * JOIN costs a signature and a channel-key wrap, so one address may join only so often.
 */
export function takeJoinToken(state: State, addr: string, now: number): boolean {
  const { joinPerMin, joinBurst } = state.config.limits;
  const b = state.joinBuckets.get(addr) ?? { tokens: joinBurst, refilledAt: now };
  b.tokens = Math.min(joinBurst, b.tokens + (Math.max(0, now - b.refilledAt) * joinPerMin) / 60_000);
  b.refilledAt = Math.max(b.refilledAt, now);
  state.joinBuckets.set(addr, b);
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

/** Drop the hello buckets that have refilled (a full bucket is the same as none). */
export function forgetFullHelloBuckets(state: State, now: number): void {
  const { helloPerSec, helloBurst } = state.config.limits;
  for (const [addr, b] of state.helloBuckets) {
    if (b.tokens + (Math.max(0, now - b.refilledAt) * helloPerSec) / 1000 >= helloBurst) {
      state.helloBuckets.delete(addr);
    }
  }
  const { joinPerMin, joinBurst } = state.config.limits;
  for (const [addr, b] of state.joinBuckets) {
    if (b.tokens + (Math.max(0, now - b.refilledAt) * joinPerMin) / 60_000 >= joinBurst) {
      state.joinBuckets.delete(addr);
    }
  }
}

/** `null` when `ts` is within the freshness window, else the reason. */
export function staleness(ts: number, now: number, limits: Limits): string | null {
  const skew = Math.abs(now - ts);
  if (skew <= limits.freshnessMs) return null;
  return `frame ts is ${Math.round(skew / 1000)} s from the server clock (limit ${
    Math.round(limits.freshnessMs / 1000)
  } s)`;
}
