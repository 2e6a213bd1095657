/**
 * One connection's state machine in the shell: its socket, the ordered outbound chain, back-pressure (drain),
 * the too-slow cut, lingering, the single report to the reducer that it is gone, and the bounds on what it may
 * hold: bytes waiting to go out (`maxUnsentBytes`, PROFILE §11) and frames received but not yet reduced (by count,
 * `rateBurst`, and by bytes, {@linkcode INFLIGHT_BYTES}). Only this class changes a connection's fields; the
 * executor (outbound) and the inbound pipeline call its methods.
 *
 * Phases ({@linkcode Phase}): `open` → `closing` (the reducer closed it: what was queued before goes first) or
 * `lingering` (cut as too slow: closed on our side while the runtime may still hold the socket) → `ended` once the
 * runtime closed it; `open` → `dropped` when the peer or the network closed it first. Frames queued while not
 * `open` are undelivered; inbound frames still waiting when *we* decided to close are skipped.
 *
 * Drain ({@linkcode DrainState}) waits for room without polling on a fixed period: it looks again on the next turn
 * of the event loop (a reader that keeps up has emptied its buffer by then), then arms one timer for the next
 * thing: the time the buffer should reach the high-water mark at the rate it was seen to shrink, or, while it does
 * not shrink, a doubling delay that never passes the moment the stall is confirmed. The socket's close wakes it.
 *
 * @example
 * ```ts ignore
 * const c = new Connection({ conn: 1, addr, sock, limits, timers, now, counters, log, lingering, stamp, onGone });
 * if (c.room(text.length)) c.queue(text.length, Promise.resolve(text), undelivered, failed);
 * ```
 * @module
 */
import type { Limits } from "../core/types.ts";
import type { Counters } from "./counters.ts";
import type { Logger } from "./log.ts";
import { highWater, holdBound } from "./outbound.ts";
import type { Clock, Timers } from "./ports.ts";
import type { Socket } from "./transport.ts";

/**
 * Bytes of frames one connection may have in flight (received, not yet reduced) before the next ones are shed:
 * 4 MiB. The count bound (`rateBurst`, 400) alone let 400 frames of 256 KiB, 100 MiB, wait in one connection's
 * pipeline, each parsed and its canonical text kept for the digest. A frame is always taken when none is in
 * flight, so the bound never refuses a lone frame under the size limit.
 */
export const INFLIGHT_BYTES = 4 * 1024 * 1024;

/** A buffer that has not shrunk for this long belongs to a peer that does not read (it is *stalled*). */
export const STALL_MS = 250;

/** The longest a drain waits between two looks at the buffer before the stall is confirmed (and after: STALL_MS). */
const MAX_LOOK_MS = 64;

/** Where a connection is in its life (see the module doc). */
export type Phase = "open" | "closing" | "lingering" | "ended" | "dropped";

/** The outbound side while frames wait for room in the socket's buffer. */
export type DrainState = "idle" | "waiting" | "stalled";

/** What the inbound pipeline needs from a connection (lib/net/inbound.ts). */
export interface InboundConn {
  /** We decided to close this connection: frames not yet handled are skipped (and new ones are not read). */
  readonly skipping: boolean;
  /** Frames received and not yet reduced. */
  readonly inflight: number;
  /** Their bytes (as received). */
  readonly inflightBytes: number;
  /** Take a frame of `bytes` into flight; else why not (`count`: past `rateBurst`; `bytes`: past the byte bound). */
  admit(bytes: number): "count" | "bytes" | undefined;
  /** A frame taken by `admit` left flight (its turn came). */
  landed(bytes: number): void;
  /** Run `step` after every step queued before it (arrival order). */
  inOrder(step: () => void | Promise<void>): void;
}

/** What a connection needs from the executor. */
export interface ConnectionOptions {
  /** The executor's number for it (the reducer's `conn`). */
  conn: number;
  /** The peer's address (host name for connections we dialed). */
  addr: string;
  /** The socket. */
  sock: Socket;
  /** The node's limits (read when used: `maxUnsentBytes`, `rateBurst`). */
  limits: Limits;
  /** Timers for drain deadlines, the next turn and the forced close. */
  timers: Timers;
  /** The clock. */
  now: Clock;
  /** `framesOut` and `tooSlow` are counted here. */
  counters: Counters;
  /** Where it logs. */
  log: Logger;
  /** The count by address it joins when cut as too slow, and leaves once the runtime closed it. */
  lingering: { add(addr: string): void; release(addr: string): void };
  /** The text to hand the socket for a frame's text (a fresh envelope id per frame sent, PROFILE §15). */
  stamp(text: string): string;
  /** Gone: called once, after every inbound frame taken before it (the reducer hears `closed`). */
  onGone(): void;
  /** Bytes of frames in flight before more are shed (default {@linkcode INFLIGHT_BYTES}). */
  maxInflightBytes?: number;
}

/** One socket's state machine (see the module doc). */
export class Connection implements InboundConn {
  #phase: Phase = "open";
  #drain: DrainState = "idle";
  #reported = false;
  /** Outbound chain: send order. */
  #outbound: Promise<void> = Promise.resolve();
  /** Steps in the outbound chain not yet finished. */
  #pending = 0;
  /** Estimated bytes of signed frames in the outbound chain, not yet handed to the socket. */
  #ready = 0;
  /** Estimated bytes of every frame in the outbound chain (signed or not), not yet handed to the socket. */
  #held = 0;
  /** Inbound chain: arrival order. */
  #inbound: Promise<void> = Promise.resolve();
  #inflight = 0;
  #inflightBytes = 0;
  /** The drain waiting now: its timer and how to wake it early. */
  #wake: { timer: unknown; resume: () => void } | undefined;
  readonly #high: number;

  constructor(private readonly o: ConnectionOptions) {
    this.#high = highWater(o.limits.maxUnsentBytes);
  }

  /** The executor's number for it. */
  get conn(): number {
    return this.o.conn;
  }
  /** The peer's address. */
  get addr(): string {
    return this.o.addr;
  }
  /** Where it is in its life. */
  get phase(): Phase {
    return this.#phase;
  }
  /** Whether frames wait for room in the socket's buffer, and whether the peer is confirmed stalled. */
  get drain(): DrainState {
    return this.#drain;
  }
  /** Frames may be queued on it (the phase is `open`). */
  get accepting(): boolean {
    return this.#phase === "open";
  }
  /** Steps in the outbound chain not yet finished. */
  get pending(): number {
    return this.#pending;
  }
  /** Bytes waiting for the peer: signed frames in the chain plus the socket's buffer (0 once closed). */
  get unsent(): number {
    return this.o.sock.open ? this.#ready + this.o.sock.bufferedAmount : 0;
  }

  // ---- inbound ----

  /** See {@linkcode InboundConn.skipping}. */
  get skipping(): boolean {
    return this.#phase === "closing" || this.#phase === "lingering" || this.#phase === "ended";
  }
  /** See {@linkcode InboundConn.inflight}. */
  get inflight(): number {
    return this.#inflight;
  }
  /** See {@linkcode InboundConn.inflightBytes}. */
  get inflightBytes(): number {
    return this.#inflightBytes;
  }
  /** See {@linkcode InboundConn.admit}: a frame is always taken when none is in flight. */
  admit(bytes: number): "count" | "bytes" | undefined {
    if (this.#inflight >= this.o.limits.rateBurst) return "count";
    const max = this.o.maxInflightBytes ?? INFLIGHT_BYTES;
    if (this.#inflight > 0 && this.#inflightBytes + bytes > max) return "bytes";
    this.#inflight++;
    this.#inflightBytes += bytes;
    return undefined;
  }
  /** See {@linkcode InboundConn.landed}. */
  landed(bytes: number): void {
    this.#inflight--;
    this.#inflightBytes -= bytes;
  }
  /** See {@linkcode InboundConn.inOrder}. */
  inOrder(step: () => void | Promise<void>): void {
    this.#inbound = this.#inbound.then(step).catch((e) =>
      this.o.log.error("inbound.failed", { conn: this.o.conn, error: String(e) })
    );
  }
  /** Resolves once every inbound step queued so far has run. */
  settled(): Promise<void> {
    return this.#inbound;
  }

  // ---- outbound ----

  /** Run `step` after everything already queued on the outbound chain; `failed` hears its error. */
  chain(step: () => void | Promise<void>, failed?: (e: unknown) => void): void {
    this.#pending++;
    this.#outbound = this.#outbound.then(step).then(() => {
      this.#pending--;
    }, (e) => {
      this.#pending--;
      failed?.(e);
    });
  }

  /**
   * Whether a frame of `bytes` may be held for this peer. Past the bounds it is cut as too slow (and false):
   * more than `maxUnsentBytes` signed and waiting for a stalled peer, or more held (signed or not) than
   * outbound.ts's `holdBound` allows.
   */
  room(bytes: number): boolean {
    const buffered = this.o.sock.bufferedAmount;
    const max = this.o.limits.maxUnsentBytes;
    const hold = holdBound(max);
    const unsent = this.#ready + buffered + bytes;
    const held = this.#held + buffered + bytes;
    if (
      (unsent > max && this.#drain === "stalled") ||
      held > (buffered > this.#high ? hold.behind : hold.always)
    ) {
      this.cut(Math.max(unsent, held));
      return false;
    }
    return true;
  }

  /** Nothing is queued before a frame of `bytes` and the socket's buffer has room for it: it may go out now. */
  direct(bytes: number): boolean {
    return this.#pending === 0 && this.o.sock.bufferedAmount + bytes <= this.#high;
  }

  /** Hand one frame's text to the socket now; false (and nothing sent) when the socket is not open. */
  put(text: string): boolean {
    if (!this.o.sock.open) return false;
    this.o.sock.send(this.o.stamp(text));
    this.o.counters.framesOut++;
    this.o.counters.frameBytes += text.length;
    return true;
  }

  /**
   * Queue a frame of `bytes` whose text is being signed: it counts against the hold bound now and against the
   * unsent bound once signed; it goes out after what is queued before it, when the buffer has room.
   * `undelivered` runs when it never reached an open socket; `failed` when its text failed.
   */
  queue(bytes: number, text: Promise<string>, undelivered: () => void, failed: (e: unknown) => void): void {
    let signed = false;
    text.then(() => {
      signed = true;
      this.#ready += bytes;
    }, () => {});
    this.#held += bytes;
    this.chain(async () => {
      try {
        const t = await text;
        await this.drained();
        if (!this.put(t)) undelivered();
      } finally {
        if (signed) this.#ready -= bytes;
        this.#held -= bytes;
      }
    }, failed);
  }

  /**
   * Wait until the socket's buffer is at or under the high-water mark (see outbound.ts), the socket is closed, or
   * the peer is cut: a stalled peer with more than `maxUnsentBytes` signed and waiting is cut. See the module doc
   * for when it looks.
   */
  async drained(): Promise<void> {
    const sock = this.o.sock;
    if (sock.bufferedAmount <= this.#high) return;
    const { now, limits } = this.o;
    let last = sock.bufferedAmount;
    let lastAt = now();
    let progressAt = lastAt;
    let turns = 0;
    let delay = 0;
    this.#drain = "waiting";
    try {
      while (sock.open && this.#phase !== "lingering") {
        const b = sock.bufferedAmount;
        if (b <= this.#high) return;
        const t = now();
        if (b < last) {
          // Shrinking: look again when it should reach the mark at the rate seen.
          const rate = (last - b) / Math.max(1, t - lastAt);
          delay = Math.min(MAX_LOOK_MS, Math.ceil((b - this.#high) / rate));
          progressAt = t;
        } else {
          delay = Math.max(1, delay * 2);
        }
        last = b;
        lastAt = t;
        if (t - progressAt >= STALL_MS) {
          this.#drain = "stalled";
          if (this.#ready + b > limits.maxUnsentBytes) return void this.cut(this.#ready + b);
          delay = Math.min(delay, STALL_MS);
        } else {
          this.#drain = "waiting";
          delay = Math.min(delay, MAX_LOOK_MS, progressAt + STALL_MS - t);
        }
        // The first looks are on the next turns: a reader that keeps up has emptied its buffer by then.
        await this.#sleep(turns++ < 2 ? 0 : delay);
      }
    } finally {
      this.#drain = "idle";
    }
  }

  /** Wait `ms` (0: the next turn), or until woken by a close. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const { timers } = this.o;
      const resume = () => {
        if (this.#wake?.resume !== resume) return;
        this.#wake = undefined;
        resolve();
      };
      if (ms <= 0 && timers.immediate) {
        this.#wake = { timer: undefined, resume };
        timers.immediate(resume);
      } else {
        this.#wake = { timer: timers.set(resume, Math.max(0, ms)), resume };
      }
    });
  }

  /** Wake a drain waiting on a timer (the socket closed, or the connection was cut). */
  #wakeDrain(): void {
    const w = this.#wake;
    if (!w) return;
    if (w.timer !== undefined) this.o.timers.clear(w.timer);
    w.resume();
  }

  // ---- closing ----

  /**
   * The reducer closes it: frames queued before go first, but a peer that does not read cannot hold the close
   * back past `hardMs`. Inbound frames not yet handled are skipped from now on.
   */
  close(code: number, reason: string, hardMs = 5_000): void {
    if (this.#phase !== "open") return;
    this.#phase = "closing";
    const closeNow = () => this.o.sock.close(code, reason.slice(0, 120));
    const hard = this.o.timers.set(closeNow, hardMs);
    this.chain(() => {
      this.o.timers.clear(hard);
      closeNow();
    });
  }

  /**
   * Cut as too slow: more than the bounds wait for a peer that does not read. The reducer hears at once (after
   * the inbound frames already taken); the runtime may hold the socket until the peer reads or goes away, so it
   * lingers, counted against its address, until then.
   */
  cut(unsent: number): void {
    // Once the reducer closed it, its own close (or the forced one) ends it.
    if (this.#phase !== "open") return;
    this.#phase = "lingering";
    this.o.counters.tooSlow++;
    this.o.lingering.add(this.o.addr);
    this.o.log.warn("conn.too_slow", {
      conn: this.o.conn,
      addr: this.o.addr,
      unsent_bytes: unsent,
      limit: this.o.limits.maxUnsentBytes,
    });
    this.o.sock.close(1008, "too slow");
    this.#wakeDrain();
    this.inOrder(() => this.#report());
  }

  /** The node stops: close with 1001. */
  shutdown(): void {
    this.o.sock.close(1001, "server shutting down");
  }

  /** The runtime closed the socket (either side): the end of lingering, and the reducer hears (once). */
  closed(): void {
    const was = this.#phase;
    if (was === "ended" || was === "dropped") return;
    this.#phase = was === "open" ? "dropped" : "ended";
    if (was === "lingering") this.o.lingering.release(this.o.addr);
    this.#wakeDrain();
    this.inOrder(() => this.#report());
  }

  /** Tell the executor (once) that it is gone. */
  #report(): void {
    if (this.#reported) return;
    this.#reported = true;
    this.o.onGone();
  }
}
