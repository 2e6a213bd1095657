/**
 * The effect interpreter: it holds the reducer's state and the open connections, hands events to the reducer
 * and carries out the effects it returns (send, close, dial, the store, the channel key, probes, logs). It is
 * written against {@linkcode StoreLike} and the {@linkcode Transport}/{@linkcode Socket} interfaces, so that it
 * runs the same over SQLite and real sockets (node.ts) or over a store in memory and a fake transport (tests).
 *
 * Effects run in the order the reducer emitted them, at most ~1 MiB of frames per turn of the event loop (a large
 * fan-out continues on the next turns). Outbound frames are signed concurrently and sent in order per
 * connection; identical payloads are signed once, and a frame whose text is ready goes out at once
 * ({@linkcode Signer}). A peer that does not read is cut past `maxUnsentBytes` (PROFILE §11).
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
import {
  type Effect,
  endpointUrl,
  type Event,
  type Limits,
  type ServerRecord,
  type State,
  type Step,
  type UserRecord,
} from "../core/types.ts";
import type { PrivateKey } from "../crypto/rsa.ts";
import type { SealedKey } from "../crypto/keyfile.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import { canonicalJson, type PreimageForm } from "../protocol/canonical_json.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import { decodePublicKey } from "../protocol/keys.ts";
import { type Envelope, serializeEnvelope, withFrameId } from "../protocol/envelope.ts";
import { setImmediate } from "node:timers";
import { sha256HexSync, sha256Sync } from "./digest.ts";
import type { Counters } from "./http.ts";
import { readSoftware } from "./probe.ts";
import { type InboundConn, type InboundContext, onFrame } from "./inbound.ts";
import type { Accept, Socket, Transport } from "./transport.ts";
import type { Logger } from "./log.ts";
import { Signer } from "./signer.ts";
import { ChannelKeyHolder } from "./channel_key.ts";
import { approxBytes, highWater, holdBound } from "./outbound.ts";

/** The store writes and reads the executor makes (lib/store/sqlite.ts's `Store` implements it). */
export interface StoreLike {
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

/** The timers the executor sets (dial delays, forced closes, buffer polling); default the runtime's. */
export interface Timers {
  /** Run `fn` once after `ms`; returns a handle for {@linkcode Timers.clear}. */
  set(fn: () => void, ms: number): unknown;
  /** Cancel a timer not yet run. */
  clear(handle: unknown): void;
  /** Run `fn` on the next turn of the event loop, after pending I/O (default `setImmediate`; else `set(fn, 0)`). */
  immediate?(fn: () => void): void;
}

/** Signs outbound frames ({@linkcode Signer} implements it). */
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

/** Holds the public channel's key and carries out its effects ({@linkcode ChannelKeyHolder} implements it). */
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
  /** The channel key holder, given the executor's dispatch (default a {@linkcode ChannelKeyHolder}). */
  channelKeys?: (dispatch: (ev: Event) => void) => ChannelKeys;
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

interface Conn extends InboundConn {
  sock: Socket;
  /** The peer's address (host name for connections we dialed). */
  addr: string;
  /** Send-order chain of outbound frames. */
  outbound: Promise<void>;
  /** Entries in `outbound` not yet finished: while there are none, a frame whose text is ready goes out at once. */
  queued: number;
  closing: boolean;
  /** Estimated bytes of signed frames in the outbound chain, not yet handed to the socket. */
  ready: number;
  /** Estimated bytes of every frame in the outbound chain (signed or not), not yet handed to the socket. */
  held: number;
  /** The outbound queue waits for a peer that does not read (see `drain`). */
  stalled: boolean;
  /** The reducer has been told this connection closed. */
  gone: boolean;
  /** Cut as too slow, and the runtime has not closed it yet. */
  lingering: boolean;
}

/** Stored rows (offline queue, outbox) read from the store at a time: 16 frames, 4 MiB at the frame limit. */
export const STORED_PAGE = 16;

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
  const sockets = new Map<number, Conn>();
  const frameId = ctx.frameId ?? (() => crypto.randomUUID());
  /**
   * Hand one frame's text to the socket with a fresh envelope `id` (PROFILE §15): fresh per frame *sent*, not per
   * frame signed, so a broadcast's copies (one signed text) differ on every connection, and a frame sent twice on
   * one connection (an advert after a link flap, a resend) is never dropped as a repeated id.
   */
  const put = (s: Conn, text: string) => s.sock.send(withFrameId(text, frameId()));
  /** Connections cut as too slow that the runtime still holds (their peer neither reads nor closes), by address. */
  const lingering = new Map<string, number>();
  const dialTimers = new Set<unknown>();
  /** Offline-queue rows being handed over now (see `sendStored`). */
  const handing = new Set<number>();
  const high = highWater(limits.maxUnsentBytes);
  const hold = holdBound(limits.maxUnsentBytes);
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
    verifiedForm,
  };
  /**
   * PROFILE §15 spaced preimage: which forms each peer key's signatures verified in (by DER SPKI, bounded). A peer
   * seen signing only spaced gets our frames signed spaced; one seen signing canonically (too) gets canonical.
   */
  const forms = new Map<string, { canonical: boolean; spaced: boolean }>();
  const spkiOf = new Map<string, string>();
  function spki(key: string): string {
    let k = spkiOf.get(key);
    if (k === undefined) {
      const d = decodePublicKey(key);
      k = d.ok ? encodeBase64Url(d.key.spki) : key;
      if (spkiOf.size >= 4096) spkiOf.delete(spkiOf.keys().next().value!);
      spkiOf.set(key, k);
    }
    return k;
  }
  function verifiedForm(key: string, form: PreimageForm): void {
    if (form === "either") return; // `{}`: the same bytes in both forms, says nothing
    const k = spki(key);
    const f = forms.get(k) ?? { canonical: false, spaced: false };
    if (form === "spaced") f.spaced = true;
    else f.canonical = true;
    forms.delete(k);
    forms.set(k, f);
    if (forms.size > 4096) forms.delete(forms.keys().next().value!);
  }
  /** The key of the peer at the other end of `conn`, as the reducer knows it. */
  function peerKey(conn: number): string | undefined {
    const c = state.conns.get(conn);
    if (!c) return undefined;
    if (c.role === "user") return c.userId ? state.users.get(c.userId)?.pubkey : undefined;
    const sid = c.serverId ?? c.dial?.serverId;
    return (sid ? state.servers.get(sid)?.pubkey : undefined) ?? c.dial?.expectKey;
  }
  /** Sign for `conn` in the spaced form: its peer's signatures verified only in that form (PROFILE §15). */
  function spacedFor(conn: number): boolean {
    if (forms.size === 0) return false;
    const key = peerKey(conn);
    const f = key === undefined ? undefined : forms.get(spki(key));
    return f !== undefined && f.spaced && !f.canonical;
  }
  let nextConn = 1;
  let stopping = false;
  /** A store write failed: the node is stopping, and no effect runs any more (see `write`). */
  let storeFailed = false;
  const channel: ChannelKeys = ctx.channelKeys
    ? ctx.channelKeys(dispatch)
    : new ChannelKeyHolder({ key: ctx.key, secret, store, dispatch, log, now }, ctx.channelKey);

  function dispatch(ev: Event): void {
    let step: Step;
    try {
      step = reduce(state, ev);
    } catch (e) {
      // Last line of defence: a bug in handling one event is logged and, for a frame, refuses that frame (with a
      // strike, like any invalid frame); it never ends the process or leaves the connection waiting.
      const type = ev.kind === "frame" && ev.parsed.ok ? ev.parsed.envelope.type : undefined;
      log.error("event.failed", {
        kind: ev.kind,
        type: type ?? "",
        conn: "conn" in ev ? ev.conn : 0,
        error: String(e),
      });
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
   * Write to the store. A failed write is fatal (crash-only): it is logged and the node is told (it stops, and is
   * restarted from the database instead of running with memory ahead of disk). False when the write failed.
   */
  function write(f: () => void): boolean {
    if (storeFailed) return false; // crash-only: nothing is written after a failed write
    try {
      f();
      return true;
    } catch (e) {
      storeFailed = true;
      log.error("store.write_failed", { error: String(e) });
      ctx.onStoreFailed(e);
      return false;
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
    if (storeFailed) return; // the node is stopping: nothing the reducer decides now is carried out
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
          if (!run(fx) || storeFailed) {
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
      if (pendingSeen.length > 0 && !storeFailed && head >= backlog.length) {
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
      case "send":
        send(fx);
        break;
      case "close": {
        const s = sockets.get(fx.conn);
        if (!s || s.closing) break;
        s.closing = true;
        s.cut = true;
        log.debug("conn.closing", { conn: fx.conn, code: fx.code, reason: fx.reason });
        const closeNow = () => s.sock.close(fx.code, fx.reason.slice(0, 120));
        // Frames before the close go first, but a peer that does not read cannot hold the close back.
        const hard = timers.set(closeNow, 5_000);
        chain(s, () => {
          timers.clear(hard);
          closeNow();
        });
        break;
      }
      case "dial":
        dial(fx.token, endpointUrl(fx), fx.afterMs, fx.timeoutMs);
        break;
      case "deliverQueued": {
        const ids = store.queuedIds(fx.userId, fx.notBefore);
        sendStored(
          fx.conn,
          ids,
          (page) => store.storedFrames("queue", page),
          (ids) => write(() => store.dequeue(ids)),
          `queued for ${fx.userId}`,
          fx.userId,
        );
        break;
      }
      case "flushOutbox": {
        const ids = store.outboxIds(fx.serverId, fx.notBefore);
        // PROFILE §16: a kept frame goes out with the time it is sent (`fwd_ts`, signed with the payload): the
        // receiver judges its freshness on that, not on the original time hours ago.
        const at = now();
        const kept = (page: number[]) =>
          store.storedFrames("outbox", page).map((r) => {
            const f = r.frame as Envelope;
            return { id: r.id, frame: { ...f, payload: { ...(f.payload as object), fwd_ts: at } } };
          });
        if (fx.confirm) {
          // Rows stay until the server ACKs each frame (outboxAcked).
          sendStored(
            fx.conn,
            ids,
            kept,
            () => {},
            `kept for ${fx.serverId}`,
          );
        } else {
          // A server that does not speak the ACK extension (PROFILE §15): without `ack`, and handing the frames
          // to the live link is delivery.
          const plain = (page: number[]) =>
            kept(page).map((r) => {
              const f = r.frame as Envelope;
              const { ack: _ack, ...payload } = f.payload as Record<string, unknown>;
              return { id: r.id, frame: { ...f, payload } };
            });
          sendStored(
            fx.conn,
            ids,
            plain,
            (ids) => write(() => store.deleteOutbox(ids)),
            `handed to ${fx.serverId}`,
          );
        }
        break;
      }
      case "outboxHanded":
        write(() => store.clearOutbox(fx.serverId));
        break;
      case "probe":
        probe(fx.serverId, fx.url);
        break;
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
        if (
          !write(() => {
            const op = fx.op;
            if (op.op === "upsertUser") store.upsertUser(op.user, now());
            else if (op.op === "pinServer") store.pinServer(op.server, now());
            else if (op.op === "setServerId") store.setServerId(op.serverId);
            else if (op.op === "setHome") store.setHome(op.userId, op.serverId);
            else if (op.op === "enqueue") store.enqueue(op.userId, op.frame, op.now);
            else if (op.op === "outbox") {
              const ref = msgRef(sha256Sync(canonicalJson(op.frame.payload)));
              store.addOutbox(op.serverId, ref, op.frame, op.now);
            } else if (op.op === "channel") store.setChannel(op.version, op.creatorPub, now());
            else if (op.op === "acceptRef") store.acceptRef(op.ref, op.now);
            else if (op.op === "pinUser") store.pinUser(op.userId, op.pubkey, op.now);
            else if (op.op === "seen") pendingSeen.push([op.key, op.exp]);
            else store.addMember(op.memberId, op.wrappedKey, op.now);
          })
        ) {
          return false; // nothing after a failed write may claim it succeeded: the node is stopping
        }
        break;
      case "log":
        log.log(fx.level, fx.event, fx.fields);
        break;
    }
    return true;
  }

  /** Sign (and seal) one frame and queue it on its connection, cutting a peer that does not read. */
  function send(fx: Extract<Effect, { kind: "send" }>): void {
    const { conn, frame, seal } = fx;
    const s = sockets.get(conn);
    if (!s || s.closing) return undelivered(conn, frame);
    // A peer that does not read makes frames wait; past the bound it is cut (PROFILE §11, unsent bytes). Frames
    // still being signed count against the hold bounds (see outbound.ts): they wait for us, but take memory.
    const bytes = approxBytes(frame);
    const unsent = s.ready + s.sock.bufferedAmount + bytes;
    const held = s.held + s.sock.bufferedAmount + bytes;
    const behind = s.sock.bufferedAmount > high;
    if ((unsent > limits.maxUnsentBytes && s.stalled) || held > (behind ? hold.behind : hold.always)) {
      tooSlow(conn, s, Math.max(unsent, held));
      return undelivered(conn, frame);
    }
    if (frame.type === "ERROR") metrics.refused++;
    // Nothing waiting before it and its text ready (an ACK, a stored advert): out now, not after promise turns.
    const spaced = fx.sign && spacedFor(conn);
    if (!seal && s.queued === 0 && s.sock.bufferedAmount + bytes <= high) {
      const t = signer.textNow?.(frame, fx.sign, spaced);
      if (t !== undefined) {
        if (s.sock.open) {
          put(s, t);
          metrics.framesOut++;
        } else undelivered(conn, frame);
        return;
      }
    }
    let text: Promise<string>;
    if (seal) {
      const f = { ...frame };
      text = channel.seal(f, seal).then((ok) =>
        ok
          ? signer.sign(f.payload, spaced).then((sig) => serializeEnvelope({ ...f, sig }))
          : Promise.reject(new Error("no channel key"))
      );
    } else {
      // Signed and serialized once per frame object (an advert kept while its user is online, a broadcast).
      text = signer.text(fx.frame, fx.sign, spaced);
    }
    // Frames count against the peer once signed: until then they wait for us, not for the peer.
    let ready = false;
    text.then(() => {
      ready = true;
      s.ready += bytes;
    }, () => {});
    s.held += bytes;
    chain(s, async () => {
      try {
        const t = await text;
        await drain(conn, s);
        if (s.sock.open) {
          put(s, t);
          metrics.framesOut++;
        } else undelivered(conn, frame);
      } finally {
        if (ready) s.ready -= bytes;
        s.held -= bytes;
      }
    }, (e) => log.error("send.failed", { conn, error: String(e) }));
  }

  /**
   * Read `software` from a server's /.well-known/socp (PROFILE §15: who speaks the outbox ACK extension). Bounded
   * in time and size; any failure answers "" (it says nothing, so it gets no extension).
   */
  function probe(serverId: string, url: string): void {
    const answer = (sw: string, tls: boolean) => {
      if (stopping) return;
      try {
        dispatch({ kind: "software", now: now(), serverId, software: sw, ...(tls ? { tls } : {}) });
      } catch (e) {
        log.error("probe.failed", { server: serverId, error: String(e) });
      }
    };
    // A server that joined us says nothing of TLS: when plain http cannot connect, try https (and the reducer
    // then redials it with wss://).
    software(url).catch(() =>
      url.startsWith("http://")
        ? software(url.replace(/^http:/, "https:")).then((sw) => ({ sw, tls: true }))
        : Promise.reject(new Error("no answer"))
    ).then(
      (r) => typeof r === "string" ? answer(r, false) : answer(r.sw, r.tls),
      () => answer("", false),
    );
  }

  /**
   * Send stored frames (queue or outbox) in order, signed now, then delete them once they have left. Rows are read
   * from the store a page at a time ({@linkcode STORED_PAGE} rows, at most 4 MiB of frames at the 256 KiB frame
   * limit), each page signed concurrently and sent paced by `drain`, so a full queue never sits in memory at once.
   */
  function sendStored(
    conn: number,
    ids: number[],
    load: (page: number[]) => { id: number; frame: unknown }[],
    remove: (ids: number[]) => void,
    what: string,
    queueOf?: string,
  ) {
    // Queue rows another connection of the same user is still handing over are theirs (a user back while the
    // old connection's hand-over had not noticed the cut): that one gives back what it did not send.
    if (queueOf !== undefined) ids = ids.filter((id) => !handing.has(id));
    if (ids.length === 0) return;
    const s = sockets.get(conn);
    const giveBack = (from: number) => {
      if (queueOf === undefined) return;
      for (const id of ids) handing.delete(id);
      if (from < ids.length) {
        later({ kind: "undelivered", conn, now: now(), userId: queueOf, stored: ids.length - from });
      }
    };
    if (!s) return giveBack(0); // gone before this effect's turn: every row is still queued
    if (queueOf !== undefined) { for (const id of ids) handing.add(id); }
    /** Rows done (sent, or gone from the store), from the first: the rest are still stored. */
    let done = 0;
    const spaced = spacedFor(conn);
    chain(s, async () => {
      for (let at = 0; at < ids.length; at += STORED_PAGE) {
        const page = ids.slice(at, at + STORED_PAGE);
        const rows = new Map(load(page).map((r) => [r.id, r.frame as Envelope]));
        const frames = page.map((id) => {
          const f = rows.get(id);
          return f ? { ...f, from: state.config.serverId } : undefined;
        });
        rows.clear();
        const sigs = frames.map((f) => f ? signer.sign(f.payload, spaced) : Promise.resolve(""));
        sigs.forEach((p) => p.catch(() => {})); // awaited in order below; one failing must not leave others unhandled
        for (let i = 0; i < page.length; i++) {
          const f = frames[i];
          frames[i] = undefined; // let the frame go once it is handed over
          if (f) {
            f.sig = await sigs[i];
            await drain(conn, s); // paced: a long queue never piles up in the runtime's buffer
            if (!s.sock.open) {
              // Cut or gone halfway: what left is delivered, the rest stays queued for the user's next hello.
              if (done > 0) remove(ids.slice(0, done));
              return giveBack(done);
            }
            put(s, serializeEnvelope(f));
            metrics.framesOut++;
          }
          done = at + i + 1;
        }
      }
      remove(ids);
      giveBack(ids.length);
      log.info("stored.delivered", { conn, frames: ids.length, what });
    }, (e) => {
      log.error("stored.failed", { conn, error: String(e) });
      if (done > 0) remove(ids.slice(0, done));
      giveBack(done);
    });
  }

  /**
   * Wait until the socket has room (its buffer at or under the high-water mark; see outbound.ts), looking again on
   * the next turn of the event loop while the buffer shrinks (a reader that keeps up), else every 10 ms. The peer
   * is *stalled* when its buffer has not shrunk over five polls and a quarter second: a peer that reads empties
   * it as soon as this node yields, however busy the node was. A stalled peer with more than
   * `maxUnsentBytes` signed and waiting for it is cut (frames still being signed wait for us, not for the peer).
   */
  async function drain(conn: number, s: Conn): Promise<void> {
    if (s.sock.bufferedAmount <= high) return;
    const since = now();
    let last = Infinity;
    let still = 0;
    try {
      while (s.sock.open) {
        const b = s.sock.bufferedAmount;
        if (b <= high) return;
        still = b < last ? 0 : still + 1;
        last = b;
        s.stalled = still >= 5 && now() - since >= 250;
        if (s.stalled && s.ready + b > limits.maxUnsentBytes) return tooSlow(conn, s, s.ready + b);
        // A reader that keeps up empties the buffer by the next turn: look again then; one that does not, every
        // 10 ms.
        await new Promise<void>((r) => still < 3 ? nextTurn(r) : timers.set(r, 10));
      }
    } finally {
      s.stalled = false;
    }
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

  /** Run `step` after everything already queued on the connection (counted in `queued`). */
  function chain(s: Conn, step: () => void | Promise<void>, failed?: (e: unknown) => void): void {
    s.queued++;
    s.outbound = s.outbound.then(step).then(() => {
      s.queued--;
    }, (e) => {
      s.queued--;
      failed?.(e);
    });
  }

  /** Tell the reducer (once) that a connection is gone. */
  function gone(conn: number, s: Conn): void {
    if (s.gone) return;
    s.gone = true;
    sockets.delete(conn);
    dispatch({ kind: "closed", conn, now: now() });
    log.debug("conn.closed", { conn });
  }

  /**
   * Cut a connection whose peer does not read: more than `maxUnsentBytes` wait for it. The reducer hears now (the
   * user goes offline, so what follows for them is queued, and they may log in again); the runtime may hold the
   * socket until the peer reads or goes away, so such sockets still count against their address.
   */
  function tooSlow(conn: number, s: Conn, unsent: number): void {
    if (s.closing) return;
    s.closing = true;
    s.cut = true;
    metrics.tooSlow++;
    log.warn("conn.too_slow", { conn, addr: s.addr, unsent_bytes: unsent, limit: limits.maxUnsentBytes });
    lingering.set(s.addr, (lingering.get(s.addr) ?? 0) + 1);
    s.lingering = true;
    s.sock.close(1008, "too slow");
    s.inbound = s.inbound.then(() => gone(conn, s));
  }

  function attach(conn: number, sock: Socket, addr: string): Conn {
    const s: Conn = {
      sock,
      addr,
      inbound: Promise.resolve(),
      outbound: Promise.resolve(),
      queued: 0,
      closing: false,
      cut: false,
      inflight: 0,
      inflightBytes: 0,
      ready: 0,
      held: 0,
      stalled: false,
      gone: false,
      lingering: false,
    };
    sockets.set(conn, s);
    sock.onMessage = (data) => onFrame(inboundCtx, conn, s, data);
    sock.onClose = () => {
      s.closing = true;
      if (s.lingering) {
        s.lingering = false;
        const n = (lingering.get(addr) ?? 1) - 1;
        if (n <= 0) lingering.delete(addr);
        else lingering.set(addr, n);
      }
      s.inbound = s.inbound.then(() => gone(conn, s));
    };
    return s;
  }

  function dial(token: number, url: string, afterMs: number, timeoutMs: number): void {
    const t = timers.set(() => {
      dialTimers.delete(t);
      if (stopping) return;
      transport.dial(url, timeoutMs, {
        onFail: (reason) => dispatch({ kind: "dialFailed", token, now: now(), reason }),
        onOpen: (sock) => {
          const conn = nextConn++;
          metrics.connectionsTotal++;
          const addr = new URL(url).hostname;
          attach(conn, sock, addr);
          log.debug("dial.open", { conn, url });
          dispatch({ kind: "connected", conn, addr, now: now(), dial: token });
        },
      });
    }, afterMs);
    dialTimers.add(t);
  }

  function upgrade(addr: string, accept: Accept, idleTimeoutS: number): Response {
    if ((lingering.get(addr) ?? 0) >= limits.maxConnsPerAddr) {
      return new Response(
        "too many connections from this address were cut as too slow and are still open\n",
        { status: 429 },
      );
    }
    const conn = nextConn++;
    const { socket, response } = accept(idleTimeoutS, () => {
      log.debug("conn.opened", { conn, addr });
      dispatch({ kind: "connected", conn, addr, now: now() });
    });
    metrics.connectionsTotal++;
    attach(conn, socket, addr);
    return response;
  }

  return {
    state: () => state,
    dispatch,
    upgrade,
    channelPending: () => channel.pending(),
    started: () => channel.started(),
    connections: () => sockets.size,
    maxUnsent: () => {
      let most = 0;
      for (const s of sockets.values()) {
        if (s.sock.open) most = Math.max(most, s.ready + s.sock.bufferedAmount);
      }
      return most;
    },
    maxInflight: () => {
      let most = 0;
      for (const s of sockets.values()) most = Math.max(most, s.inflightBytes);
      return most;
    },
    effectsWaiting: () => backlog.length - head,
    signatures: () => signer.signatures,
    stop: () => {
      if (!draining) runBacklog(Infinity); // what the reducer decided before the stop (store writes) still happens
      stopping = true;
      for (const t of dialTimers) timers.clear(t);
      for (const s of sockets.values()) s.sock.close(1001, "server shutting down");
    },
  };
}
