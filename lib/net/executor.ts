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
import { type Effect, endpointUrl, type Event, type Step } from "../core/types.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { sha256HexSync } from "./digest.ts";
import { probeSoftware, readSoftware, softwareEvent } from "./probe.ts";
import { type InboundContext, onFrame } from "./inbound.ts";
import { Signer } from "./signer.ts";
import { ChannelKeyHolder } from "./channel_key.ts";
import { approxBytes, send } from "./outbound.ts";
import { Connections } from "./connections.ts";
import { Claims, forwarded, handOver as startHandover } from "./handover.ts";
import { CrashOnlyWrites, groupPersists, type PersistAll, persistAll } from "./persist.ts";
import { PeerForms, peerKey } from "./forms.ts";
import {
  type ChannelKeys,
  type FrameSigner,
  type Read,
  runtimeTimers,
  type Timers,
  type Write,
} from "./ports.ts";

export type { ChannelKeys, Clock, FrameSigner, Read, StoreLike, Timers, Write } from "./ports.ts";
export { STORED_PAGE } from "./handover.ts";
export type { Executor, ExecutorContext } from "./executor_types.ts";
import type { Executor, ExecutorContext } from "./executor_types.ts";

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
  const timers: Timers = ctx.timers ?? runtimeTimers;
  const nextTurn = (fn: () => void) => timers.immediate ? timers.immediate(fn) : timers.set(fn, 0);
  const claims = new Claims(); // offline-queue rows being handed over now
  const forms = new PeerForms();
  const writes = new CrashOnlyWrites(log, ctx.onStoreFailed),
    write: Write = writes.write,
    read: Read = writes.read;
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
   * the sockets per turn; the rest wait here for the next turn (a hello at N users online fans out 2N adverts:
   * copied into the runtime in one turn they make a peak the allocator keeps, and delay the newcomer's ACK).
   */
  const backlog: (Effect | PersistAll)[] = [];
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
    for (const fx of groupPersists(effects)) backlog.push(fx);
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
      // Seen-cache keys are written once per turn, in one transaction (not one disk sync per frame), and only
      // once every effect before them has run: a key written while its frame's effects wait for a later turn
      // (the enqueue of a DM) would, if that write then failed, make the sender's resend after the restart a
      // "duplicate", ACKed and lost (found by the simulation, tests/sim: seed 302 with failing store writes).
      if (pendingSeen.length > 0 && !writes.failed && head >= backlog.length) {
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
  function run(fx: Effect | PersistAll): boolean {
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
        // Reads are crash-only like writes: the reducer has counted these rows as handed over.
        const ids = read(() => store.queuedIds(fx.userId, fx.notBefore));
        if (!ids) return false;
        handOver(fx.conn, ids, "queue", (f) => f, remove, `queued for ${fx.userId}`, fx.userId);
        break;
      }
      case "flushOutbox": {
        // PROFILE §16: kept frames go out with the time they are sent (`fwd_ts`); they stay until the server ACKs
        // each (outboxAcked), unless it does not speak the ACK extension (PROFILE §15): then handing them is delivery.
        const at = now();
        const remove = fx.confirm ? undefined : (ids: number[]) => write(() => store.deleteOutbox(ids));
        const prepare = (f: Envelope) => forwarded(f, at, fx.confirm);
        const ids = read(() => store.outboxIds(fx.serverId, fx.notBefore));
        if (!ids) return false;
        handOver(fx.conn, ids, "outbox", prepare, remove, fx.serverId);
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
      case "persist": // a step's persist effects come grouped (persistAll), in one transaction
      case "persistAll": {
        const ops = fx.kind === "persist" ? [fx.op] : fx.ops;
        // Nothing after a failed write may claim it succeeded: the node is stopping.
        if (!write(() => persistAll(store, ops, now(), pendingSeen))) return false;
        break;
      }
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
      load: (page) => read(() => store.storedFrames(table, page)),
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
