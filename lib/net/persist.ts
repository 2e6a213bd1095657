/**
 * The persist mapping and the crash-only store wrapper, shared by the node and the simulation.
 *
 * {@linkcode persist} turns one reducer `persist` effect into the store call that makes it durable (a switch the
 * compiler checks is complete: a new op is a compile error here until it is mapped). Seen-cache keys are not
 * written one by one: they are collected in a batch the executor writes once per turn (one transaction instead
 * of a disk sync per frame).
 *
 * {@linkcode CrashOnlyWrites} runs every store write of the shell (persist effects, the hand-over's deletes, the
 * channel key) and every store read it acts on at run time (the ids of a user's queue or a server's outbox, the
 * stored frames a hand-over reads): a failed write or read is logged, the node is told (it stops and restarts
 * from the database instead of running with memory ahead of disk, or acting on a partial view of it), and
 * nothing is written or read after it.
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
import type { Effect, PersistOp } from "../core/types.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import { sha256Sync } from "./digest.ts";
import type { Logger } from "./log.ts";
import type { StoreLike } from "./ports.ts";

/** One step's persist effects as one write: see {@linkcode groupPersists}. */
export type PersistAll = { kind: "persistAll"; ops: PersistOp[] };

/**
 * One step's persist effects as one write (one transaction when the store has `tx`), at the place of the first:
 * a later one moves up past sends, closes and log lines only, never past an effect that reads or writes the store
 * or the channel. So a step's writes land together or not at all. As two writes, a DM queued for an offline user
 * with its msg_ref not yet remembered (the second write failed, the node stopped) was queued again when the
 * sender's server resent it after the restart (found by the simulation: tests/sim, seed 116). Writing earlier
 * than the reducer listed it is safe: nothing is announced before what it announces is on disk.
 */
export function groupPersists(effects: Effect[]): (Effect | PersistAll)[] {
  const out: (Effect | PersistAll)[] = [];
  let batch: PersistOp[] | null = null;
  for (const fx of effects) {
    if (fx.kind === "persist") {
      if (batch) batch.push(fx.op);
      else out.push({ kind: "persistAll", ops: batch = [fx.op] });
      continue;
    }
    if (fx.kind !== "send" && fx.kind !== "close" && fx.kind !== "log") batch = null;
    out.push(fx);
  }
  return out;
}

/** Make a step's persist ops durable, in one transaction when there are several and the store has `tx`. */
export function persistAll(store: StoreLike, ops: PersistOp[], now: number, seen: [string, number][]): void {
  const all = () => ops.forEach((op) => persist(store, op, now, seen));
  if (ops.length > 1 && store.tx) store.tx(all);
  else all();
}

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
 * Every store write of the shell, and every read it acts on, goes through one instance: a failed one is fatal
 * (crash-only). It is logged, `onFailed` hears it (the node stops), and every later write or read is refused
 * without touching the store. A read is fatal like a write because the shell acts on what it reads: a hand-over
 * that went on past a failed read would skip the rows it could not read while the reducer counts them as handed
 * over, and nothing would send them again until a restart.
 */
export class CrashOnlyWrites {
  #failed = false;

  /** `onFailed` is called once, with the first failure and whether it was a read or a write. */
  constructor(
    private readonly log: Logger,
    private readonly onFailed: (error: unknown, op: "read" | "write") => void,
  ) {}

  /** A write or read failed: the node is stopping. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Run one read; undefined when it failed or a store call failed before (then `f` is not run). */
  read = <T>(f: () => T): T | undefined => {
    if (this.#failed) return undefined;
    try {
      return f();
    } catch (e) {
      this.#fail(e, "read");
      return undefined;
    }
  };

  #fail(e: unknown, op: "read" | "write"): void {
    this.#failed = true;
    this.log.error(`store.${op}_failed`, { error: String(e) });
    this.onFailed(e, op);
  }

  /** Run one write; false when it failed or a write failed before (then `f` is not run). */
  write = (f: () => void): boolean => {
    if (this.#failed) return false;
    try {
      f();
      return true;
    } catch (e) {
      this.#fail(e, "write");
      return false;
    }
  };
}
