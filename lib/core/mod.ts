/**
 * The sans-IO core of a socp node: `reduce(state, event) -> { state, effects }`, synchronous and deterministic.
 * A shell feeds in {@linkcode Event}s (a connection opened, a frame arrived and was verified, a timer ticked) and
 * carries out the {@linkcode Effect}s (send, close, dial, persist, log). No I/O, no clock, no randomness: time
 * and fresh ids arrive inside events.
 *
 * @example Drive the reducer by hand
 * ```ts
 * const expect = (ok: boolean, what: string) => {
 *   if (!ok) throw new Error(what);
 * };
 * import {
 *   DEFAULT_FEDERATION,
 *   DEFAULT_LIMITS,
 *   type Event,
 *   initState,
 *   nextDeadline,
 *   type NodeConfig,
 *   reduce,
 * } from "./mod.ts";
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
 * const opened: Event = { kind: "connected", conn: 1, addr: "127.0.0.1", now: 0 };
 * state = reduce(state, opened).state;
 * expect(state.conns.get(1)?.role === "pending", "a new connection is pending");
 *
 * // The reducer says when it next needs the clock: the first-frame timeout (the shell arms one timer for it).
 * expect(nextDeadline(state) === 10_001, "due 10 s after the connection opened");
 *
 * // Eleven seconds later and still no hello: the reducer says ERROR TIMEOUT and close (the shell does both).
 * const step = reduce(state, { kind: "tick", now: 11_000 });
 * const send = step.effects.find((e) => e.kind === "send");
 * expect(send?.kind === "send" && send.frame.type === "ERROR", "an ERROR is sent");
 * expect(step.effects.some((e) => e.kind === "close" && e.conn === 1), "and the connection closed");
 * ```
 * @module
 */
export { initState, nextDeadline, reduce } from "./reduce.ts";
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
  type HelloKind,
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
