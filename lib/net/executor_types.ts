/**
 * The executor's interfaces: what it needs from the node ({@linkcode ExecutorContext}: the state to start from,
 * the ports of ports.ts, the limits, the hooks) and what a running one offers ({@linkcode Executor}).
 * executor.ts implements them and re-exports both.
 *
 * @module
 */
import type { Event, Limits, State, Step } from "../core/types.ts";
import type { PrivateKey } from "../crypto/rsa.ts";
import type { SealSecret } from "../crypto/keyfile.ts";
import type { Counters } from "./counters.ts";
import type { InboundContext } from "./inbound.ts";
import type { Logger } from "./log.ts";
import type { ChannelKeys, FrameSigner, StoreLike, Timers, Write } from "./ports.ts";
import type { Accept, Transport } from "./transport.ts";

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
  /** What seals the channel key at rest (a passphrase, or the node's random key). */
  secret: SealSecret;
  /** The public channel's private key, when this node holds it. */
  channelKey: PrivateKey | null;
  /** The node's limits. */
  limits: Limits;
  /** Where the executor logs. */
  log: Logger;
  /** Counters for `/metrics`. */
  counters: Counters;
  /** Called once, on the first failed store write or read (crash-only: the node stops). */
  onStoreFailed(error: unknown, op?: "read" | "write"): void;
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
