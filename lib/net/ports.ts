/**
 * The ports of the shell: what the effect executor and its parts need from the outside world, as interfaces. The
 * node plugs in SQLite, the runtime's timers, an RSA signer and the channel-key holder; a test
 * or the simulation plugs in stores in memory, fake timers and simulated signatures. Nothing here touches a
 * socket, a file or the clock.
 *
 * @example
 * ```ts ignore
 * const timers: Timers = { set: (fn, ms) => setTimeout(fn, ms), clear: (h) => clearTimeout(h as number) };
 * ```
 * @module
 */
import type { Effect, ServerRecord, UserRecord } from "../core/types.ts";
import type { SealedKey } from "../crypto/keyfile.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { setImmediate } from "node:timers";

/** The store writes and reads the executor makes (lib/store/sqlite.ts's `Store` implements it). */
export interface StoreLike {
  /** Run `fn` in one transaction (optional: without it, a step's writes are made one by one). */
  tx?<T>(fn: () => T): T;
  /** Insert or replace a user. */
  upsertUser(u: UserRecord, now?: number): void;
  /** Pin a server's key and endpoint. */
  pinServer(s: ServerRecord, now?: number): void;
  /** Record the server id we go by. */
  setServerId(serverId: string): void;
  /** Record a user's home server. */
  setHome(userId: string, serverId: string): void;
  /** Queue a frame for an offline user. */
  enqueue(userId: string, frame: unknown, now: number): void;
  /** Ids of the frames queued for a user, oldest first, queued at or after `notBefore` (older ones are deleted). */
  queuedIds(userId: string, notBefore: number): number[];
  /** Delete queued frames. */
  dequeue(ids: number[]): void;
  /** Keep a frame for a server until it is acknowledged. */
  addOutbox(serverId: string, ref: string, frame: unknown, now: number): void;
  /** Ids of the frames kept for a server, oldest first, kept at or after `notBefore` (older ones are deleted). */
  outboxIds(serverId: string, notBefore: number): number[];
  /**
   * The frames of these rows of the offline queue or the outbox, in id order (rows no longer there are left out).
   * The shell reads stored frames a page at a time: a full queue is 1,000 frames of up to 256 KiB.
   */
  storedFrames(table: "queue" | "outbox", ids: number[]): { id: number; frame: unknown }[];
  /** Delete the outbox frame a server acknowledged. */
  ackOutbox(serverId: string, ref: string): void;
  /** Delete every frame kept for a server. */
  clearOutbox(serverId: string): void;
  /** Delete outbox frames by id. */
  deleteOutbox(ids: number[]): void;
  /** Remember a message reference as accepted (replay protection). */
  acceptRef(ref: string, now: number): void;
  /** Pin a user's key (PROFILE §16). */
  pinUser(userId: string, pubkey: string, now: number): void;
  /** Keep seen-cache keys until their expiry, in one write (PROFILE §16). */
  addSeen(entries: [string, number][]): void;
  /** Record the public channel's version and creator key. */
  setChannel(version: number, creatorPub: string, now: number): void;
  /** Record a public channel member and its wrapped key. */
  addMember(memberId: string, wrappedKey: string, now: number): void;
  /** Keep the channel's private key, sealed. */
  setChannelKey(creatorPub: string, sealed: SealedKey): void;
}

/**
 * The timers the shell sets (dial delays, forced closes, drain deadlines, the next turn); default the runtime's.
 * Fake ones (tests, the simulation) run them when the test advances its clock.
 */
export interface Timers {
  /** Run `fn` once after `ms`; returns a handle for {@linkcode Timers.clear}. */
  set(fn: () => void, ms: number): unknown;
  /** Cancel a timer not yet run. */
  clear(handle: unknown): void;
  /** Run `fn` on the next turn of the event loop, after pending I/O (default `setImmediate`; else `set(fn, 0)`). */
  immediate?(fn: () => void): void;
}

/** The runtime's timers (`setTimeout`, `clearTimeout`, `setImmediate`): the default wherever `Timers` are taken. */
export const runtimeTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as number),
  immediate: (fn) => void setImmediate(fn),
};

/** The clock: milliseconds since the epoch (default `Date.now`). */
export type Clock = () => number;

/** Signs outbound frames (lib/net/signer.ts's `Signer` implements it). */
export interface FrameSigner {
  /** The signature over the canonical form of `payload` (the spaced form of PROFILE §15 when `spaced`). */
  sign(payload: unknown, spaced?: boolean): Promise<string>;
  /** The wire text of `frame`: signed with our key when `sign` (spaced when `spaced`), else with its own `sig`. */
  text(frame: Envelope, sign: boolean, spaced?: boolean): Promise<string>;
  /** The wire text of `frame` when it is ready now (no signature to wait for), else `undefined`. */
  textNow?(frame: Envelope, sign: boolean, spaced?: boolean): string | undefined;
  /** Signatures actually computed. */
  readonly signatures: number;
}

/** Holds the public channel's key and carries out its effects (lib/net/channel_key.ts implements it). */
export interface ChannelKeys {
  /** While a first server creates its key at start: resolves once it exists. */
  pending(): Promise<void> | undefined;
  /** Start is over. */
  started(): void;
  /** Create the channel key; the reducer hears `channelReady` or `channelFailed`. */
  create(): void;
  /** Adopt a channel key wrapped for us. */
  adopt(version: number, creatorPub: string, wrappedKey: string): void;
  /** Fill in a frame's channel-key crypto; false when this node holds no channel key. */
  seal(frame: Envelope, seal: NonNullable<Extract<Effect, { kind: "send" }>["seal"]>): Promise<boolean>;
}

/**
 * The crash-only write wrapper (lib/net/persist.ts's `CrashOnlyWrites`): runs one store write; after a failed
 * write (or read) nothing more is written and the node is told (it stops). False when the write did not happen.
 */
export type Write = (f: () => void) => boolean;

/**
 * The crash-only read wrapper (lib/net/persist.ts's `CrashOnlyWrites`): runs one store read the shell acts on;
 * a failed read stops the node like a failed write. Undefined when the read did not happen.
 */
export type Read = <T>(f: () => T) => T | undefined;
