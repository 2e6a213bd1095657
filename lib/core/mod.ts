/**
 * The sans-IO core of a socp node: `reduce(state, event) -> { state, effects }`, synchronous and deterministic.
 * A shell feeds in {@linkcode Event}s (a connection opened, a frame arrived and was verified, a timer ticked) and
 * carries out the {@linkcode Effect}s (send, close, dial, persist, log). No I/O, no clock, no randomness: time
 * and fresh ids arrive inside events.
 *
 * @example Drive the reducer by hand
 * ```ts
 * import { type Event, initState, type NodeConfig, reduce } from "./mod.ts";
 * import { DEFAULT_FEDERATION, DEFAULT_LIMITS } from "./mod.ts";
 *
 * const config: NodeConfig = {
 *   serverId: crypto.randomUUID(),
 *   serverPub: "our-base64url-spki",
 *   serverPubPem: "our-base64url-pem",
 *   limits: { ...DEFAULT_LIMITS },
 *   federation: { ...DEFAULT_FEDERATION },
 *   labWeakKeys: false,
 *   labReplay: false,
 * };
 * let state = initState(config);
 * const event: Event = { kind: "connected", conn: 1, addr: "127.0.0.1", now: 0 };
 * const step = reduce(state, event);
 * state = step.state;
 * console.log(state.conns.size, step.effects.map((e) => e.kind));
 * ```
 * @module
 */
export { initState, reduce } from "./reduce.ts";
export type { SeenCache } from "./dedupe.ts";
export {
  type BootstrapEntry,
  type Channel,
  type Conn,
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type DialIntent,
  type Effect,
  endpointUrl,
  type Event,
  type FederationConfig,
  type JoinState,
  type Limits,
  type Loaded,
  type LogLevel,
  type NodeConfig,
  type PersistOp,
  type Presence,
  type Role,
  type Seal,
  type ServerRecord,
  type SigCheck,
  type State,
  type Step,
  type Transfer,
  type UserRecord,
} from "./types.ts";
export type {
  AnyEnvelope,
  Envelope,
  ErrorCode,
  MessageType,
  ParseResult,
  PayloadOf,
  ProtocolError,
} from "../protocol/mod.ts";
