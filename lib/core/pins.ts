/**
 * PROFILE §16 key pins: one key per user id, network-wide. A server pins an id to its key on first sight, from a
 * hello (the `users` row) or from a USER_ADVERTISE (`state.pins`), and keeps the pin. A key that derives the id
 * (the self-certifying ids of lib/protocol/user_id.ts) wins over a pin that does not, never the reverse, so
 * nobody can hold a derived id against its owner.
 *
 * @module
 */
import { sameKeyMaterial } from "../protocol/keys.ts";
import { derivesId, keyFingerprint } from "../protocol/user_id.ts";
import type { Out } from "./out.ts";
import type { State } from "./types.ts";

/** What a presented key means for a user id. */
export type KeyVerdict =
  /** Nothing is pinned for the id: trust on first use. */
  | "new"
  /** The pinned key (perhaps in another encoding). */
  | "same"
  /** Another key that derives the id, over a pin that does not: it replaces the pin. */
  | "replaces"
  /** Another key, and it does not win: refused. */
  | "conflict";

/** The key pinned for a user id: their binding here, else the key first seen in an advert. */
export function pinnedUserKey(state: State, userId: string): string | undefined {
  return state.users.get(userId)?.pubkey ?? state.pins.get(userId);
}

/** Judge a key presented for `userId` (in a hello or an advert) against the pin. */
export function judgeUserKey(state: State, userId: string, key: string): KeyVerdict {
  const pinned = pinnedUserKey(state, userId);
  if (pinned === undefined) return "new";
  if (sameKeyMaterial(pinned, key)) return "same";
  return derivesId(key, userId) && !derivesId(pinned, userId) ? "replaces" : "conflict";
}

/** Pin `key` for a user bound elsewhere (new, or replacing a non-deriving pin), persisted. */
export function pinRemoteUser(out: Out, userId: string, key: string): void {
  if (out.state.users.has(userId)) return; // bound here: the users row is the pin
  if (out.state.pins.get(userId) === key) return;
  out.state.pins.set(userId, key);
  out.persist({ op: "pinUser", userId, pubkey: key, now: out.now });
}

/** Log a refused key for a pinned id, naming both fingerprints (PROFILE §16: refused, logged, never relayed). */
export function logKeyConflict(out: Out, userId: string, key: string, where: string): void {
  out.log("warn", "user.key_conflict", {
    user: userId,
    where,
    pinned: keyFingerprint(pinnedUserKey(out.state, userId) ?? ""),
    presented: keyFingerprint(key),
  });
}

/** Log a non-deriving pin replaced by the key that derives the id (a resolved conflict). */
export function logKeyResolved(out: Out, userId: string, key: string, where: string): void {
  out.log("warn", "user.key_conflict_resolved", {
    user: userId,
    where,
    replaced: keyFingerprint(pinnedUserKey(out.state, userId) ?? ""),
    by: keyFingerprint(key),
    note: "the new key derives the user id (PROFILE §16)",
  });
}
