/**
 * The effect interpreter: it holds the reducer's state, hands events to the reducer and carries out the effects
 * it returns. This file keeps the effect switch and the backlog; the rest are named parts, testable alone:
 * connection.ts and connections.ts (each socket's state machine, the open connections), handover.ts (stored
 * rows, a state per row), persist.ts (persist effects to store calls, crash-only writes), ports.ts (store,
 * timers, signer, channel keys, clock).
 *
 * Effects run in the order the reducer emitted them, at most ~1 MiB of frames per turn of the event loop (a large
 * fan-out continues on the next turns).
 *
 * @example
 * ```ts ignore
 * const ex = createExecutor({ state, store, transport, key, secret, channelKey: null, limits, log,
 *   counters, onStoreFailed: (e) => stop(e) });
 * ex.dispatch({ kind: "tick", now: Date.now() });
 * ```
 * @module
 */
import { reduce } from "../core/reduce.ts";
import { type Effect, endpointUrl, type Event, type Limits, type State, type Step } from "../core/types.ts";
import type { PrivateKey } from "../crypto/rsa.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { setImmediate } from "node:timers";
import { sha256HexSync } from "./digest.ts";
import type { Counters } from "./counters.ts";
import { probeSoftware, readSoftware, softwareEvent } from "./probe.ts";
import { type InboundContext, onFrame } from "./inbound.ts";
import type { Accept, Transport } from "./transport.ts";
import type { Logger } from "./log.ts";
import { Signer } from "./signer.ts";
import { ChannelKeyHolder } from "./channel_key.ts";
import { approxBytes, send } from "./outbound.ts";
import { Connections } from "./connections.ts";
import { Claims, forwarded, handOver as startHandover } from "./handover.ts";
import { CrashOnlyWrites, persist } from "./persist.ts";
import { PeerForms, peerKey } from "./forms.ts";
import type { ChannelKeys, FrameSigner, StoreLike, Timers, Write } from "./ports.ts";

export type { ChannelKeys, Clock, FrameSigner, StoreLike, Timers, Write } from "./ports.ts";
export { STORED_PAGE } from "./handover.ts";

/** What the executor needs from the node. */
export interface ExecutorContext {
  /** The reducer's state to start from. */
  state: State;
  /** Where persist effects go. */
  store: StoreLike;
  /** How `dial` effects connect. */
  transport: Transport;
  /** The server's identity key (signs frames, opens wrapped channel keys). */
  key: PrivateKey;
  /** Passphrase that seals the channel key at rest. */
  secret: string;
  /** The public channel's private key, when this node holds it. */
  channelKey: PrivateKey | null;
  /** The node's limits. */
  limits: Limits;
  /** Where the executor logs. */
  log: Logger;
  /** Counters for `/metrics`. */
  counters: Counters;
  /** Called on each failed store write (crash-only: the node stops). */
  onStoreFailed(error: unknown): void;
  /** The clock (default `Date.now`). */
  now?: () => number;
  /** Reads a server's `software` (default: its `/.well-known/socp`, {@linkcode readSoftware}). */
  readSoftware?: (url: string) => Promise<string>;
  /** Timers (default `setTimeout`/`clearTimeout`). */
  timers?: Timers;
  /** Signs outbound frames (default an RSA {@linkcode Signer} over `key`). */
  signer?: FrameSigner;
  /** The channel key holder, given dispatch and the crash-only writes (default a {@linkcode ChannelKeyHolder}). */
  channelKeys?: (dispatch: (ev: Event) => void, write: Write) => ChannelKeys;
  /** Inbound SHA-256 (default WebCrypto), see {@linkcode InboundContext}. */
  digest?: InboundContext["digest"];
  /** Inbound signature check (default RSA-PSS), see {@linkcode InboundContext}. */
  verify?: InboundContext["verify"];
  /** Fresh ids for the reducer (default `crypto.randomUUID`). */
  fresh?: () => string;
  /** The envelope `id` of each frame sent (PROFILE §15; default `crypto.randomUUID`). */
  frameId?: () => string;
  /** Called after each event the reducer handled, with its step (before the effects run). */
  onStep?: (ev: Event, step: Step) => void;
  /** Bytes of frames handed to the sockets per turn of the event loop (default 1 MiB; see `execute`). */
  turnBytes?: number;
}

/** A running executor. */
export interface Executor {
  /** The reducer's state now. */
  state(): State;
  /** Hand an event to the reducer and carry out its effects. */
  dispatch(ev: Event): void;
  /** Accept a WebSocket upgrade from `addr` as a new connection (429 while too many from it linger). */
  upgrade(addr: string, accept: Accept, idleTimeoutS: number): Response;
  /** While a first server creates its channel key at start: resolves once it exists. */
  channelPending(): Promise<void> | undefined;
  /** Start is over: a channel key created from now on does not hold connections back. */
  started(): void;
  /** Open connections. */
  connections(): number;
  /** The most bytes waiting for one connection now: signed frames in its queue plus its socket buffer. */
  maxUnsent(): number;
  /** The most bytes of frames received on one connection and not yet reduced (bounded by `INFLIGHT_BYTES`). */
  maxInflight(): number;
  /** Effects the reducer emitted that wait for a turn of the event loop (see the fan-out budget). */
  effectsWaiting(): number;
  /** Signatures made (for `/metrics`). */
  signatures(): number;
  /** Stop: no more dials, every connection closed (1001). */
  stop(): void;
}

/** How stored rows are handed over: the frame to send for each, deleted after (else kept), for the log. */
type Stored = {
  prepare(f: Envelope): Envelope;
  remove?(ids: number[]): boolean;
  what: string;
  queueOf?: string;
};

/** Bytes of frames the executor hands to sockets per turn of the event loop (see `execute`). */
const TURN_BYTES = 1 << 20;

/** Create the executor over a store and a transport. */
export function createExecutor(ctx: ExecutorContext): Executor {
  const { store, transport, limits, log, secret } = ctx;
  const metrics = ctx.counters;
  const now = ctx.now ?? Date.now;
  const software = ctx.readSoftware ?? readSoftware;
  let state = ctx.state;
  const signer: FrameSigner = ctx.signer ?? new Signer(ctx.key, 128, sha256HexSync);
  const timers: Timers = ctx.timers ?? {
    set: (fn, ms) => setTimeout(fn, ms),
    clear: (h) => clearTimeout(h as number),
    immediate: (fn) => void setImmediate(fn),
  };
  const nextTurn = (fn: () => void) => timers.immediate ? timers.immediate(fn) : timers.set(fn, 0);
  const claims = new Claims(); // offline-queue rows being handed over now
  const forms = new PeerForms();
  const writes = new CrashOnlyWrites(log, ctx.onStoreFailed), write: Write = writes.write;
  const sockets = new Connections({
    limits,
    timers,
    now,
    counters: metrics,
    log,
    transport,
    frameId: ctx.frameId ?? (() => crypto.randomUUID()),
    onFrame: (conn, c, data) => onFrame(inboundCtx, conn, c, data),
    dispatch,
  });
  const inboundCtx: InboundContext = {
    limits,
    counters: metrics,
    state: () => state,
    dispatch,
    log,
    now,
    digest: ctx.digest,
    verify: ctx.verify,
    fresh: ctx.fresh,
    verifiedForm: (key, form) => forms.verified(key, form),
  };
  /** Sign for `conn` in the spaced form: its peer's signatures verified only in that form (PROFILE §15). */
  const spacedFor = (conn: number) => forms.spaced(peerKey(state, conn));
  let stopping = false;
  const channel: ChannelKeys = ctx.channelKeys
    ? ctx.channelKeys(dispatch, write)
    : new ChannelKeyHolder({ key: ctx.key, secret, store, write, dispatch, log, now }, ctx.channelKey);

  function dispatch(ev: Event): void {
    let step: Step;
    try {
      step = reduce(state, ev);
    } catch (e) {
      // Last line of defence: a bug in handling one event is logged and, for a frame, refuses that frame (with a
      // strike, like any invalid frame); it never ends the process or leaves the connection waiting.
      const type = ev.kind === "frame" && ev.parsed.ok ? ev.parsed.envelope.type : undefined;
      const conn = "conn" in ev ? ev.conn : 0;
      log.error("event.failed", { kind: ev.kind, type: type ?? "", conn, error: String(e) });
      if (ev.kind === "frame" && ev.parsed.ok) {
        const detail = `the node failed while handling this ${type} frame; it was refused`;
        dispatch({ ...ev, parsed: { ok: false, error: { code: "UNKNOWN_TYPE", detail, type } } });
      }
      return;
    }
    state = step.state;
    ctx.onStep?.(ev, step);
    try {
      execute(step.effects);
    } catch (e) {
      log.error("effects.failed", { kind: ev.kind, error: String(e) });
    }
  }

  /**
   * Effects run in the order the reducer emitted them, across events, but at most `TURN_BYTES` of frames go to
   * the sockets per turn of the event loop; the rest wait here (as the reducer's own effect objects) for the next
   * turn. A hello at N users online emits N snapshot adverts and N copies of the newcomer's advert, and every frame
   * handed to a socket is copied into the runtime until it is written: without the budget a burst of hellos
   * copies them all in one turn (the allocator then keeps that peak long after), and the newcomer's ACK, the first
   * effect, is not written until the whole fan-out has been handed over.
   */
  const backlog: Effect[] = [];
  /** Seen-cache keys to persist at the end of this turn (PROFILE §16). */
  const pendingSeen: [string, number][] = [];
  let head = 0;
  let draining = false;
  let resumeSet = false;
  /** Bytes of frames handed over in this turn (it starts over on the next turn). */
  let spent = 0;
  const turnBytes = ctx.turnBytes ?? TURN_BYTES;

  function execute(effects: Effect[]): void {
    if (writes.failed) return; // the node is stopping: nothing the reducer decides now is carried out
    for (const fx of effects) backlog.push(fx);
    if (!draining && !resumeSet) runBacklog(turnBytes);
  }

  function runBacklog(limit: number): void {
    draining = true;
    try {
      while (head < backlog.length) {
        const fx = backlog[head];
        backlog[head++] = undefined as unknown as Effect; // let the frame go once it is handed over
        if (fx.kind === "send") {
          if (spent === 0) nextTurn(() => spent = 0);
          spent += approxBytes(fx.frame);
        }
        try {
          if (!run(fx) || writes.failed) {
            backlog.length = head = 0;
            break;
          }
        } catch (e) {
          log.error("effects.failed", { kind: fx.kind, error: String(e) });
        }
        if (spent >= limit && head < backlog.length) {
          resumeSet = true;
          nextTurn(() => {
            resumeSet = false;
            runBacklog(turnBytes);
          });
          break;
        }
      }
    } finally {
      draining = false;
      // Seen-cache keys are written once per turn, in one transaction (not one disk sync per frame).
      if (pendingSeen.length > 0 && !writes.failed) {
        const batch = pendingSeen.splice(0);
        write(() => store.addSeen(batch));
      }
      if (head === backlog.length) {
        backlog.length = 0;
        head = 0;
      } else if (head >= 1024) {
        backlog.splice(0, head);
        head = 0;
      }
    }
  }

  /** Carry out one effect; false after a failed store write (nothing queued after it may run). */
  function run(fx: Effect): boolean {
    switch (fx.kind) {
      case "send": {
        const { conn, frame } = fx;
        const taken = send(sockets.get(conn), fx, {
          signer,
          channel,
          spaced: fx.sign && spacedFor(conn),
          undelivered: () => undelivered(conn, frame),
          failed: (e) => log.error("send.failed", { conn, error: String(e) }),
        });
        if (taken && frame.type === "ERROR") metrics.refused++;
        break;
      }
      case "close": {
        const c = sockets.get(fx.conn);
        if (!c || !c.accepting) break;
        log.debug("conn.closing", { conn: fx.conn, code: fx.code, reason: fx.reason });
        c.close(fx.code, fx.reason);
        break;
      }
      case "dial":
        sockets.dial(fx.token, endpointUrl(fx), fx.afterMs, fx.timeoutMs);
        break;
      case "deliverQueued": {
        const remove = (ids: number[]) => write(() => store.dequeue(ids));
        const ids = store.queuedIds(fx.userId, fx.notBefore);
        handOver(fx.conn, ids, "queue", (f) => f, remove, `queued for ${fx.userId}`, fx.userId);
        break;
      }
      case "flushOutbox": {
        // PROFILE §16: kept frames go out with the time they are sent (`fwd_ts`); they stay until the server ACKs
        // each (outboxAcked), unless it does not speak the ACK extension (PROFILE §15): then handing them is delivery.
        const at = now();
        const remove = fx.confirm ? undefined : (ids: number[]) => write(() => store.deleteOutbox(ids));
        const prepare = (f: Envelope) => forwarded(f, at, fx.confirm);
        handOver(fx.conn, store.outboxIds(fx.serverId, fx.notBefore), "outbox", prepare, remove, fx.serverId);
        break;
      }
      case "outboxHanded":
        write(() => store.clearOutbox(fx.serverId));
        break;
      case "probe": { // PROFILE §15: who speaks the outbox ACK extension (a failure answers "")
        const { serverId } = fx;
        probeSoftware(software, fx.url).then((r) => stopping || dispatch(softwareEvent(serverId, r, now())));
        break;
      }
      case "outboxAcked":
        write(() => store.ackOutbox(fx.serverId, fx.msgRef));
        break;
      case "createChannel":
        channel.create();
        break;
      case "adoptChannel":
        channel.adopt(fx.version, fx.creatorPub, fx.wrappedKey);
        break;
      case "persist":
        // Nothing after a failed write may claim it succeeded: the node is stopping.
        if (!write(() => persist(store, fx.op, now(), pendingSeen))) return false;
        break;
      case "log":
        log.log(fx.level, fx.event, fx.fields);
        break;
    }
    return true;
  }

  /**
   * Hand stored frames (queue or outbox) over on `conn`, signed now ({@linkcode Handover}). Queue rows another
   * connection of the same user is still handing over are theirs (a user back while the old connection's
   * hand-over had not noticed the cut): that one gives back what it did not send, and the reducer's count of the
   * user's queue goes back up by what was given back.
   */
  function handOver(
    conn: number,
    ids: number[],
    table: "queue" | "outbox",
    prepare: (f: Envelope) => Envelope,
    remove: ((ids: number[]) => boolean) | undefined,
    what: string,
    queueOf?: string,
  ): void {
    const spaced = spacedFor(conn);
    startHandover({
      ids,
      conn,
      what,
      log,
      remove,
      link: sockets.get(conn),
      claims: queueOf === undefined ? undefined : claims,
      load: (page) => store.storedFrames(table, page),
      prepare: (f) => ({ ...prepare(f), from: state.config.serverId }),
      sign: (payload) => signer.sign(payload, spaced),
      onDone: ({ returned }) =>
        queueOf !== undefined && returned > 0 &&
        later({ kind: "undelivered", conn, now: now(), userId: queueOf, stored: returned }),
    });
  }

  /**
   * A DM for a local user that did not reach its socket (closed, or cut as too slow): the reducer re-routes it
   * (the user's new connection, else the offline queue). Frames already handed to the runtime cannot be taken
   * back; at most the high-water mark of them (see outbound.ts) is in the runtime's buffer when a reader is cut.
   */
  function undelivered(conn: number, frame: Envelope): void {
    if (frame.type !== "USER_DELIVER" || typeof frame.to !== "string") return;
    later({ kind: "undelivered", conn, now: now(), userId: frame.to, frame });
  }

  /** Dispatch after the current step's effects (never from inside them), unless stopping. */
  function later(ev: Event): void {
    queueMicrotask(() => {
      if (!stopping) dispatch(ev);
    });
  }

  return {
    state: () => state,
    dispatch,
    upgrade: (addr, accept, idleTimeoutS) => sockets.upgrade(addr, accept, idleTimeoutS),
    channelPending: () => channel.pending(),
    started: () => channel.started(),
    connections: () => sockets.size,
    maxUnsent: () => sockets.maxUnsent(),
    maxInflight: () => sockets.maxInflight(),
    effectsWaiting: () => backlog.length - head,
    signatures: () => signer.signatures,
    stop: () => {
      if (!draining) runBacklog(Infinity); // what the reducer decided before the stop (store writes) still happens
      stopping = true;
      sockets.stop();
    },
  };
}
