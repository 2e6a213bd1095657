/**
 * The persist mapping and the crash-only write wrapper, shared by the node and the simulation.
 *
 * {@linkcode persist} turns one reducer `persist` effect into the store call that makes it durable (a switch the
 * compiler checks is complete: a new op is a compile error here until it is mapped). Seen-cache keys are not
 * written one by one: they are collected in a batch the executor writes once per turn (one transaction instead
 * of a disk sync per frame).
 *
 * {@linkcode CrashOnlyWrites} runs every store write of the shell (persist effects, the hand-over's deletes, the
 * channel key): a failed write is logged, the node is told (it stops and restarts from the database instead of
 * running with memory ahead of disk), and nothing is written after it.
 *
 * @example
 * ```ts ignore
 * const writes = new CrashOnlyWrites(log, (e) => node.stop(e));
 * const seen: [string, number][] = [];
 * writes.write(() => persist(store, fx.op, Date.now(), seen));
 * if (seen.length) writes.write(() => store.addSeen(seen.splice(0)));
 * ```
 * @module
 */
import type { PersistOp } from "../core/types.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import { sha256Sync } from "./digest.ts";
import type { Logger } from "./log.ts";
import type { StoreLike } from "./ports.ts";

/**
 * Make one persist op durable in `store`. `now` stamps the rows whose op carries no time of its own; a `seen` op
 * is pushed to `seen` (the caller writes the batch with `store.addSeen`). Throws what the store throws: run it
 * inside {@linkcode CrashOnlyWrites.write}.
 */
export function persist(store: StoreLike, op: PersistOp, now: number, seen: [string, number][]): void {
  switch (op.op) {
    case "upsertUser":
      return store.upsertUser(op.user, now);
    case "pinServer":
      return store.pinServer(op.server, now);
    case "setServerId":
      return store.setServerId(op.serverId);
    case "setHome":
      return store.setHome(op.userId, op.serverId);
    case "enqueue":
      return store.enqueue(op.userId, op.frame, op.now);
    case "outbox":
      // Kept under its msg_ref: the peer's ACK names it (PROFILE §15, outbox ACK extension).
      return store.addOutbox(op.serverId, outboxRef(op.frame.payload), op.frame, op.now);
    case "channel":
      return store.setChannel(op.version, op.creatorPub, now);
    case "acceptRef":
      return store.acceptRef(op.ref, op.now);
    case "pinUser":
      return store.pinUser(op.userId, op.pubkey, op.now);
    case "seen":
      seen.push([op.key, op.exp]);
      return;
    case "member":
      return store.addMember(op.memberId, op.wrappedKey, op.now);
    default: {
      const unmapped: never = op;
      throw new Error(`persist op not mapped: ${JSON.stringify(unmapped)}`);
    }
  }
}

/** The msg_ref an outbox row is kept (and acknowledged) under: over the canonical payload. */
export function outboxRef(payload: unknown): string {
  return msgRef(sha256Sync(canonicalJson(payload)));
}

/**
 * Every store write of the shell goes through one instance: a failed write is fatal (crash-only). It is logged,
 * `onFailed` hears it (the node stops), and every later write is refused without touching the store.
 */
export class CrashOnlyWrites {
  #failed = false;

  /** `onFailed` is called once, with the first failure. */
  constructor(private readonly log: Logger, private readonly onFailed: (error: unknown) => void) {}

  /** A write failed: the node is stopping. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Run one write; false when it failed or a write failed before (then `f` is not run). */
  write = (f: () => void): boolean => {
    if (this.#failed) return false;
    try {
      f();
      return true;
    } catch (e) {
      this.#failed = true;
      this.log.error("store.write_failed", { error: String(e) });
      this.onFailed(e);
      return false;
    }
  };
}
