/**
 * What a follower tab handed to the leader tab, kept until the leader confirms it took it (tabs.ts). A
 * message written in a follower goes to the leader over the channel between tabs; a leader tab closing (or
 * reloading, or crashing) as it arrives would lose it. So the follower keeps each one, under the id it chose,
 * until the leader says `took` (a text is in the shared history on disk) or its copy is beyond "sending";
 * without that it hands it again at a deadline (the same id: the leader takes an id once), at once to a new
 * leader, and carries it out itself once it leads.
 *
 * Pure: the caller gives the time and arms one timer for {@linkcode HandoverQueue.next}; nothing here polls.
 *
 * @example
 * ```ts
 * import { HandoverQueue } from "./handover_queue.ts";
 * const q = new HandoverQueue<string>();
 * q.keep("e-1", "hi", 2, 0); // handed now; again at 2 s unless confirmed
 * q.due(2_000); // [{ id: "e-1", item: "hi" }]: hand it again
 * q.confirm("e-1"); // the leader took it: forgotten
 * ```
 *
 * @module
 */

/** How much a follower keeps, and when it hands again. */
export interface HandoverLimits {
  /** Most items kept (a new one beyond is refused: the caller says so, nothing is dropped silently). */
  maxItems: number;
  /** Most bytes kept (the sum of the sizes given). */
  maxBytes: number;
  /** Wait before the first hand-over again; each next wait doubles, up to `maxWaitMs`. */
  firstWaitMs: number;
  maxWaitMs: number;
  /** Hand-overs per item at most by deadline (then only a new leader, or this tab leading, carries it on). */
  maxTries: number;
}

/** The follower's limits: 100 items or 1 MiB, handed again after 2, 4, 8, 16, 30, 30 s, then it waits. */
export const HANDOVER_LIMITS: HandoverLimits = {
  maxItems: 100,
  maxBytes: 1024 * 1024,
  firstWaitMs: 2_000,
  maxWaitMs: 30_000,
  maxTries: 7,
};

interface Kept<T> {
  id: string;
  item: T;
  size: number;
  /** Hand-overs so far. */
  tries: number;
  /** When to hand it again (undefined: not by deadline any more). */
  due: number | undefined;
}

/** One item to hand (again). */
export interface Handing<T> {
  id: string;
  item: T;
}

/** A follower's items handed to the leader and not confirmed yet, in the order written. */
export class HandoverQueue<T> {
  private readonly kept = new Map<string, Kept<T>>();
  private bytes = 0;

  /** A queue within `limits`. */
  constructor(private readonly limits: HandoverLimits = HANDOVER_LIMITS) {}

  /** Items kept. */
  get size(): number {
    return this.kept.size;
  }

  /** True while `id` waits for the leader's confirmation. */
  has(id: string): boolean {
    return this.kept.has(id);
  }

  /** The items kept, oldest first. */
  items(): Handing<T>[] {
    return [...this.kept.values()].map(({ id, item }) => ({ id, item }));
  }

  /**
   * Keep `item` (`size` bytes) under `id`, handed once now (the caller posts it); false when the queue is full
   * (nothing is kept: the caller tells the user).
   */
  keep(id: string, item: T, size: number, now: number): boolean {
    if (this.kept.has(id)) return true;
    if (this.kept.size >= this.limits.maxItems || this.bytes + size > this.limits.maxBytes) return false;
    this.kept.set(id, { id, item, size, tries: 1, due: now + this.wait(1) });
    this.bytes += size;
    return true;
  }

  /** The leader took `id`: forget it. True when it was kept. */
  confirm(id: string): boolean {
    const k = this.kept.get(id);
    if (!k) return false;
    this.kept.delete(id);
    this.bytes -= k.size;
    return true;
  }

  /** The items to hand again now (their deadline passed), each with its next deadline set, oldest first. */
  due(now: number): Handing<T>[] {
    const out: Handing<T>[] = [];
    for (const k of this.kept.values()) {
      if (k.due === undefined || k.due > now) continue;
      k.tries++;
      k.due = k.tries < this.limits.maxTries ? now + this.wait(k.tries) : undefined;
      out.push({ id: k.id, item: k.item });
    }
    return out;
  }

  /** Another tab leads now: everything kept, to hand to it at once (the deadlines start again). */
  newLeader(now: number): Handing<T>[] {
    for (const k of this.kept.values()) {
      k.tries = 1;
      k.due = now + this.wait(1);
    }
    return this.items();
  }

  /** This tab leads now: everything kept, for it to carry out itself (the queue is emptied). */
  takeAll(): Handing<T>[] {
    const out = this.items();
    this.kept.clear();
    this.bytes = 0;
    return out;
  }

  /** The earliest deadline (undefined: none, arm no timer). */
  next(): number | undefined {
    let at: number | undefined;
    for (const k of this.kept.values()) {
      if (k.due !== undefined && (at === undefined || k.due < at)) at = k.due;
    }
    return at;
  }

  private wait(tries: number): number {
    return Math.min(this.limits.firstWaitMs * 2 ** (tries - 1), this.limits.maxWaitMs);
  }
}
