/**
 * The rows the reducer keeps about other parties: pinned servers and users bound to keys. Pure data.
 *
 * @module
 */

/** A server whose key is pinned to its id (a `servers` row). */
export interface ServerRecord {
  /** The server's id. */
  serverId: string;
  /** Where it listens. */
  host: string;
  /** Its port. */
  port: number;
  /** Its pinned public key. */
  pubkey: string;
  /** Endpoint path and TLS when it was dialed through a bootstrap URL (kept in memory only). */
  path?: string;
  /** It serves TLS (`wss://`). */
  tls?: boolean;
  /**
   * PROFILE §16: the pin rests only on an unsigned JOIN (a key presented, never proven). It lives in memory only,
   * is never dialed, and goes with its link, unless a verified frame on the link makes it a real pin first.
   */
  claimed?: true;
  /**
   * The pin came from a welcome's server list or an announce and was never linked: kept in memory only (it is
   * dialed) until a verified frame on a link to it makes it a persisted pin. Pins that never linked expire.
   */
  unlinked?: true;
  /**
   * The server joined with an unsigned JOIN: its address is an unsigned claim, so we never dial it (it redials
   * us), even once a verified frame made the pin real. Persisted.
   */
  noDial?: true;
}

/** A user bound to keys at this server (a `users` row). */
export interface UserRecord {
  /** The user's id. */
  userId: string;
  /** Their signing public key. */
  pubkey: string;
  /** Their encryption public key (usually the same key). */
  encPubkey: string;
  /** The `meta` of their hello (display name and such), or null. */
  meta: Record<string, unknown> | null;
  /** Bumped on every change of the row. */
  version: number;
}
