/**
 * The hand-over of stored rows: frames kept in the store (a user's offline queue, a server's outbox) read a page
 * at a time, signed now, sent in order on one connection, paced by its drain, and then deleted, kept for the
 * peer's ACK, or given back. Each row has an explicit state ({@linkcode RowState}):
 *
 * ```text
 * claimed ──read──▶ loaded ──handed to the socket──▶ sent ──▶ deleted   (delivery: queue, plain outbox)
 *    │                 │                               └────▶ kept      (outbox under the ACK extension)
 *    ├──not in the store any more──▶ missing
 *    └─────────────────┴──connection gone, cut or failed──▶ returned    (still stored: the next hello gets it)
 * ```
 *
 * Only rows in `sent` are deleted, so a row is never deleted unless it left, and never sent twice by two
 * connections of one user: queue rows are {@linkcode Claims claimed} by one hand-over at a time.
 *
 * @example
 * ```ts ignore
 * new Handover({ ids, link: connection, load: (p) => store.storedFrames("queue", p), prepare: (f) => f,
 *   sign: (p) => signer.sign(p), remove: (ids) => writes.write(() => store.dequeue(ids)), log,
 *   onDone: (r) => r.returned && tellReducer(r.returned) }).start();
 * ```
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { serializeEnvelope } from "../protocol/envelope.ts";
import type { Logger } from "./log.ts";

/** Stored rows read from the store at a time: 16 frames, 4 MiB at the 256 KiB frame limit. */
export const STORED_PAGE = 16;

/** Where one stored row is in its hand-over (see the module doc). */
export type RowState = "claimed" | "loaded" | "sent" | "deleted" | "kept" | "missing" | "returned";

/** The connection a hand-over sends on (lib/net/connection.ts's `Connection`). */
export interface HandoverLink {
  /** Run `step` after everything queued on the connection before it. */
  chain(step: () => Promise<void>, failed: (e: unknown) => void): void;
  /** Resolves once the socket's buffer has room (or it is closed, or the peer was cut). */
  drained(): Promise<void>;
  /** Hand a frame's text to the socket; false when it is not open. */
  put(text: string): boolean;
}

/** What a hand-over needs. */
export interface HandoverOptions {
  /** The rows, oldest first. */
  ids: number[];
  /** Where they go. */
  link: HandoverLink;
  /**
   * Read the frames of some rows (rows no longer stored are left out). Undefined: the read failed and the node is
   * stopping (crash-only); the hand-over ends there, and what it did not send stays stored.
   */
  load(page: number[]): { id: number; frame: unknown }[] | undefined;
  /** The frame to sign and send for a stored one (sender, forwarding time…). */
  prepare(frame: Envelope): Envelope;
  /** Our signature over a payload. */
  sign(payload: unknown): Promise<string>;
  /** Delete rows that were sent; false when the write failed. Absent: sent rows are kept (for the peer's ACK). */
  remove?(ids: number[]): boolean;
  /** Where it logs. */
  log: Logger;
  /** What the log says they are (`queued for …`). */
  what: string;
  /** The connection's number, for the log. */
  conn: number;
  /** Called once at the end, with how many rows were given back (still stored, not sent). */
  onDone(result: { sent: number; returned: number }): void;
  /** Rows read at a time (default {@linkcode STORED_PAGE}). */
  page?: number;
}

/** Queue rows being handed over now, so that two connections of one user never send one row twice. */
export class Claims {
  readonly #rows = new Set<number>();
  /** Claim the rows no other hand-over holds; returns them. */
  claim(ids: number[]): number[] {
    const mine = ids.filter((id) => !this.#rows.has(id));
    for (const id of mine) this.#rows.add(id);
    return mine;
  }
  /** Let rows go (their hand-over ended). */
  release(ids: number[]): void {
    for (const id of ids) this.#rows.delete(id);
  }
  /** Whether a hand-over holds `id`. */
  has(id: number): boolean {
    return this.#rows.has(id);
  }
}

/** One hand-over of stored rows on one connection (see the module doc). */
export class Handover {
  readonly #rows = new Map<number, RowState>();
  #ended = false;

  constructor(private readonly o: HandoverOptions) {
    for (const id of o.ids) this.#rows.set(id, "claimed");
  }

  /** The state of row `id` (undefined: not one of this hand-over's rows). */
  state(id: number): RowState | undefined {
    return this.#rows.get(id);
  }

  /** Every row's state, in row order. */
  states(): [number, RowState][] {
    return [...this.#rows];
  }

  /** Queue the hand-over on its connection, after what is queued there. */
  start(): void {
    this.o.link.chain(() => this.#run(), (e) => {
      this.o.log.error("stored.failed", { conn: this.o.conn, error: String(e) });
      this.#end();
    });
  }

  /** The rows are not sent at all (the connection was gone before their turn): every one goes back. */
  abandon(): void {
    this.#end();
  }

  async #run(): Promise<void> {
    const { ids, link, load, prepare, sign } = this.o;
    const size = this.o.page ?? STORED_PAGE;
    for (let at = 0; at < ids.length; at += size) {
      const page = ids.slice(at, at + size);
      const loaded = load(page);
      if (!loaded) return this.#end(); // the store failed: the node stops; the rest stays stored
      const found = new Map(loaded.map((r) => [r.id, r.frame as Envelope]));
      const frames = page.map((id) => {
        const f = found.get(id);
        this.#rows.set(id, f ? "loaded" : "missing");
        return f ? prepare(f) : undefined;
      });
      found.clear();
      // Signed concurrently, awaited in order; one failing must not leave the others' rejections unhandled.
      const sigs = frames.map((f) => f ? sign(f.payload) : Promise.resolve(""));
      sigs.forEach((p) => p.catch(() => {}));
      for (let i = 0; i < page.length; i++) {
        const f = frames[i];
        frames[i] = undefined; // let the frame go once it is handed over
        if (!f) continue;
        f.sig = await sigs[i];
        await link.drained(); // paced: a long queue never piles up in the runtime's buffer
        // Cut or gone halfway: what left is delivered, the rest stays stored for the next hello.
        if (!link.put(serializeEnvelope(f))) return this.#end();
        this.#rows.set(page[i], "sent");
      }
    }
    this.#end();
    this.o.log.info("stored.delivered", { conn: this.o.conn, frames: ids.length, what: this.o.what });
  }

  /** Settle every row: sent ones deleted (or kept), those not sent given back. */
  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const sent = this.o.ids.filter((id) => this.#rows.get(id) === "sent");
    if (sent.length > 0) {
      const after: RowState = !this.o.remove ? "kept" : this.o.remove(sent) ? "deleted" : "sent";
      for (const id of sent) this.#rows.set(id, after);
    }
    let returned = 0;
    for (const [id, st] of this.#rows) {
      if (st === "claimed" || st === "loaded") {
        this.#rows.set(id, "returned");
        returned++;
      }
    }
    this.o.onDone({ sent: sent.length, returned });
  }
}

/** A link that is gone: nothing can be sent on it. */
const NO_LINK: HandoverLink = { chain: () => {}, drained: () => Promise.resolve(), put: () => false };

/**
 * Start a hand-over on `link` (undefined: the connection was gone before this turn, and every row goes back).
 * With `claims` (queue rows), rows another hand-over holds are left to it; the rest are claimed until the end.
 */
export function handOver(
  o: Omit<HandoverOptions, "link"> & { link: HandoverLink | undefined; claims?: Claims },
): Handover | undefined {
  const ids = o.claims ? o.claims.claim(o.ids) : o.ids;
  if (ids.length === 0) return undefined;
  const h = new Handover({
    ...o,
    ids,
    link: o.link ?? NO_LINK,
    onDone: (r) => {
      o.claims?.release(ids);
      o.onDone(r);
    },
  });
  if (o.link) h.start();
  else h.abandon();
  return h;
}

/**
 * An outbox frame as it is sent again (PROFILE §16): with the time it is sent now (`fwd_ts`, signed with the
 * payload), so the receiver judges its freshness on that, not on the original time; without `ack` when the peer
 * does not speak the outbox ACK extension (PROFILE §15), for which handing it to the live link is delivery.
 */
export function forwarded(frame: Envelope, at: number, confirm: boolean): Envelope {
  const { ack: _ack, ...rest } = frame.payload as Record<string, unknown>;
  const payload = confirm ? { ...(frame.payload as object), fwd_ts: at } : { ...rest, fwd_ts: at };
  return { ...frame, payload } as Envelope;
}
