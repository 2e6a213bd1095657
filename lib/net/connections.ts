/**
 * The open connections of a node: accepted ones (refused with 429 while too many from one address linger after a
 * too-slow cut) and dialed ones (each dial after its delay, on one timer, cancelled at stop). Each is a
 * {@linkcode Connection}; the table numbers them, attaches their sockets to the inbound pipeline, and tells the
 * reducer when one opens and, once, when it is gone.
 *
 * @example
 * ```ts ignore
 * const table = new Connections({ limits, timers, now, counters, log, transport, frameId, onFrame, dispatch });
 * const res = table.upgrade("127.0.0.1", accept, 30);
 * ```
 * @module
 */
import type { Event, Limits } from "../core/types.ts";
import { withFrameId } from "../protocol/envelope.ts";
import { Connection } from "./connection.ts";
import type { Counters } from "./counters.ts";
import type { Logger } from "./log.ts";
import type { Clock, Timers } from "./ports.ts";
import type { Accept, Socket, Transport } from "./transport.ts";

/** Connections cut as too slow that the runtime still holds, by address (they count against it). */
export class Lingering {
  readonly #byAddr = new Map<string, number>();
  /** How many linger from `addr`. */
  count(addr: string): number {
    return this.#byAddr.get(addr) ?? 0;
  }
  /** One more lingers from `addr`. */
  add(addr: string): void {
    this.#byAddr.set(addr, this.count(addr) + 1);
  }
  /** One from `addr` is closed at last. */
  release(addr: string): void {
    const n = this.count(addr) - 1;
    if (n <= 0) this.#byAddr.delete(addr);
    else this.#byAddr.set(addr, n);
  }
}

/** What the table needs from the executor. */
export interface ConnectionsOptions {
  /** The node's limits. */
  limits: Limits;
  /** Timers (dial delays, and each connection's). */
  timers: Timers;
  /** The clock. */
  now: Clock;
  /** Counters for `/metrics`. */
  counters: Counters;
  /** Where it logs. */
  log: Logger;
  /** How dials connect. */
  transport: Transport;
  /** The envelope `id` of each frame sent (PROFILE §15). */
  frameId(): string;
  /** A frame arrived on a connection (the inbound pipeline). */
  onFrame(conn: number, c: Connection, data: unknown): void;
  /** Tell the reducer (`connected`, `closed`, `dialFailed`). */
  dispatch(ev: Event): void;
}

/** The open connections (see the module doc). */
export class Connections {
  readonly #open = new Map<number, Connection>();
  readonly #lingering = new Lingering();
  readonly #dials = new Set<unknown>();
  #next = 1;
  #stopping = false;

  constructor(private readonly o: ConnectionsOptions) {}

  /** The connection numbered `conn`, while it is not gone. */
  get(conn: number): Connection | undefined {
    return this.#open.get(conn);
  }

  /** Connections not gone. */
  get size(): number {
    return this.#open.size;
  }

  /** The most bytes waiting for one connection: signed frames in its queue plus its socket buffer. */
  maxUnsent(): number {
    let most = 0;
    for (const c of this.#open.values()) most = Math.max(most, c.unsent);
    return most;
  }

  /** The most bytes of frames received on one connection and not yet reduced. */
  maxInflight(): number {
    let most = 0;
    for (const c of this.#open.values()) most = Math.max(most, c.inflightBytes);
    return most;
  }

  /** Accept a WebSocket upgrade from `addr` (429 while too many from it linger). */
  upgrade(addr: string, accept: Accept, idleTimeoutS: number): Response {
    if (this.#lingering.count(addr) >= this.o.limits.maxConnsPerAddr) {
      return new Response(
        "too many connections from this address were cut as too slow and are still open\n",
        { status: 429 },
      );
    }
    const conn = this.#next++;
    const { socket, response } = accept(idleTimeoutS, () => {
      this.o.log.debug("conn.opened", { conn, addr });
      this.o.dispatch({ kind: "connected", conn, addr, now: this.o.now() });
    });
    this.o.counters.connectionsTotal++;
    this.#attach(conn, socket, addr);
    return response;
  }

  /** Dial `url` after `afterMs`, giving up after `timeoutMs`; the reducer hears `connected` or `dialFailed`. */
  dial(token: number, url: string, afterMs: number, timeoutMs: number): void {
    const { timers, transport, dispatch, now, log, counters } = this.o;
    const t = timers.set(() => {
      this.#dials.delete(t);
      if (this.#stopping) return;
      transport.dial(url, timeoutMs, {
        onFail: (reason) => dispatch({ kind: "dialFailed", token, now: now(), reason }),
        onOpen: (sock) => {
          const conn = this.#next++;
          counters.connectionsTotal++;
          const addr = new URL(url).hostname;
          this.#attach(conn, sock, addr);
          log.debug("dial.open", { conn, url });
          dispatch({ kind: "connected", conn, addr, now: now(), dial: token });
        },
      });
    }, afterMs);
    this.#dials.add(t);
  }

  /** Stop: no more dials, every connection closed (1001). */
  stop(): void {
    this.#stopping = true;
    for (const t of this.#dials) this.o.timers.clear(t);
    this.#dials.clear();
    for (const c of this.#open.values()) c.shutdown();
  }

  #attach(conn: number, sock: Socket, addr: string): void {
    const { dispatch, now, log } = this.o;
    const c = new Connection({
      ...this.o,
      conn,
      addr,
      sock,
      lingering: this.#lingering,
      // A fresh envelope `id` per frame *sent* (PROFILE §15), not per frame signed: a broadcast's copies (one
      // signed text) differ on every connection, and a frame sent twice on one connection is never a repeat.
      stamp: (text) => withFrameId(text, this.o.frameId()),
      onGone: () => {
        this.#open.delete(conn);
        dispatch({ kind: "closed", conn, now: now() });
        log.debug("conn.closed", { conn });
      },
    });
    this.#open.set(conn, c);
    sock.onMessage = (data) => this.o.onFrame(conn, c, data);
    sock.onClose = () => c.closed();
  }
}
