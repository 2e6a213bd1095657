/**
 * A frame fuzzer for the node's pipeline: text -> the shell's inbound pipeline (lib/net/inbound.ts: size, parse,
 * canonical digest, signature check against the key the reducer expects) -> reduce, on connections of every role (a local user, a linked server, an inbound connection not yet identified,
 * and a connection we dialed that waits for SERVER_WELCOME). Shared by tests/core/fuzz_test.ts (fast-check,
 * seeded, bounded) and tests/bench/fuzz_long.ts (10^6 frames). A run is a function of its steps: no clock, no
 * random draw outside fast-check's seeded generators.
 *
 * Frames are random and mutated: a well-formed template of every message type, then fields dropped, values
 * replaced (any JSON value, huge/unsafe/negative numbers, deep nesting, long strings, wrong types), and the text
 * itself truncated or with bytes flipped. Signature outcomes are drawn too (valid with the expected key, invalid,
 * absent). Every step checks: no exception escapes, every ERROR carries one of the six codes, and the state's
 * invariants hold.
 */
import fc from "npm:fast-check@4.10.2";
import { PAYLOADS } from "../../lib/protocol/messages.ts";
import type { Effect, Event, State } from "../../lib/core/types.ts";
import { sha256HexSync as sha256Hex } from "../../lib/net/digest.ts";
import { type InboundContext, onFrame } from "../../lib/net/inbound.ts";
import { Connection } from "../../lib/net/connection.ts";
import { Counters } from "../../lib/net/http.ts";
import { Logger } from "../../lib/net/log.ts";
import { ALICE, BOB, Harness, joining, SERVER, T0 } from "./reducer.ts";

export const SIX_CODES: ReadonlySet<string> = new Set([
  "USER_NOT_FOUND",
  "INVALID_SIG",
  "BAD_KEY",
  "TIMEOUT",
  "UNKNOWN_TYPE",
  "NAME_IN_USE",
]);
export const TYPES = Object.keys(PAYLOADS);
export const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const NEWCOMER = "dddd0000-0000-4000-8000-00000000000d";
/** Connections in a fuzz world: 1, 2 users; 10 a linked server; 20 dialed pending; 30-35 inbound pending. */
export const CONNS = [1, 2, 10, 20, 30, 31, 32, 33, 34, 35];
/** Inbound connections that close (strikes, CTRL_CLOSE) are opened again by "open" steps. */
const REOPEN = [30, 31, 32, 33, 34, 35];

/** Keys: real RSA-4096 public keys (the reducer parses them; it does no crypto). */
export interface FuzzKeys {
  user: string;
  server: string;
}

/** A node with Alice and Bob local, S2 linked, one inbound connection pending and one dial waiting for a welcome. */
export function world(keys: FuzzKeys): Harness {
  const h = new Harness(joining([{ host: "intro", port: 1, pubkey: keys.server }]));
  h.state.config.limits.ratePerSec = 1e9; // the fuzzer must reach the handlers, not the rate limit
  h.state.config.limits.rateBurst = 1e9;
  const started = h.step({ kind: "started", now: h.now, host: "127.0.0.1", port: 8765 });
  const dial = started.find((e) => e.kind === "dial");
  h.connect(1);
  h.hello(1, ALICE, keys.user);
  h.connect(2);
  h.hello(2, BOB, keys.user);
  h.connect(10);
  h.signed(10, {
    type: "SERVER_HELLO_LINK",
    from: S2,
    to: SERVER,
    ts: h.now,
    payload: { host: "127.0.0.1", port: 9000, pubkey: keys.server },
  });
  if (dial?.kind === "dial") {
    h.step({ kind: "connected", conn: 20, addr: "intro", now: h.now, dial: dial.token });
  }
  for (const c of REOPEN) h.connect(c);
  return h;
}

/** Open again what the fuzz closed: Alice, Bob, the link to S2 and the pending inbound connections. */
export function revive(h: Harness, keys: FuzzKeys): void {
  const users: [number, string][] = [[1, ALICE], [2, BOB]];
  for (const [c, u] of users) {
    if (h.state.conns.has(c) || h.state.localUsers.has(u)) continue;
    h.connect(c, `10.2.0.${c}`);
    h.hello(c, u, keys.user);
  }
  if (!h.state.conns.has(10) && !h.state.links.has(S2)) {
    h.connect(10, "10.2.0.10");
    h.signed(10, {
      type: "SERVER_HELLO_LINK",
      from: S2,
      to: h.state.config.serverId,
      ts: h.now,
      payload: { host: "127.0.0.1", port: 9000, pubkey: keys.server },
    });
  }
  for (const c of REOPEN) if (!h.state.conns.has(c)) h.connect(c, `10.3.0.${c}`);
}

function template(type: string, keys: FuzzKeys, now: number): Record<string, unknown> {
  const id = "f11e0000-0000-4000-8000-000000000001";
  const payloads: Record<string, unknown> = {
    SERVER_HELLO_JOIN: { host: "h", port: 1, pubkey: keys.server },
    SERVER_HELLO_LINK: { host: "h", port: 1, pubkey: keys.server },
    SERVER_ANNOUNCE: { host: "h", port: 1, pubkey: keys.server },
    SERVER_WELCOME: {
      assigned_id: "x",
      servers: [{ server_id: S2, host: "h", port: 1, pubkey: keys.server }],
      clients: [{ user_id: BOB, pubkey: keys.user }],
    },
    USER_ADVERTISE: {
      user_id: "c0c00000-0000-4000-8000-000000000003",
      server_id: S2,
      meta: {},
      pubkey: keys.user,
    },
    USER_REMOVE: { user_id: "c0c00000-0000-4000-8000-000000000003", server_id: S2 },
    SERVER_DELIVER: {
      user_id: ALICE,
      ciphertext: "AAAA",
      sender: BOB,
      sender_pub: keys.user,
      content_sig: "AA",
      ack: true,
    },
    HEARTBEAT: {},
    USER_HELLO: {
      client: "f",
      pubkey: keys.user,
      enc_pubkey: keys.user,
      meta: { display_name: "f", pronouns: "x", age: 30, avatar_url: "https://a", extras: { a: [1] } },
    },
    MSG_DIRECT: { ciphertext: "AAAA", sender_pub: keys.user, content_sig: "AA" },
    USER_DELIVER: { ciphertext: "AAAA", sender: BOB, sender_pub: keys.user, content_sig: "AA" },
    PUBLIC_CHANNEL_ADD: { add: [ALICE], if_version: 1 },
    PUBLIC_CHANNEL_UPDATED: { version: 2, wraps: [{ member_id: ALICE, wrapped_key: "AA" }] },
    PUBLIC_CHANNEL_KEY_SHARE: {
      shares: [{ member: ALICE, wrapped_public_channel_key: "AA" }],
      creator_pub: keys.server,
      content_sig: "AA",
    },
    MSG_PUBLIC_CHANNEL: { ciphertext: "AAAA", sender_pub: keys.user, content_sig: "AA" },
    FILE_START: { file_id: id, name: "a.txt", size: 10, sha256: "0".repeat(64), mode: "dm" },
    FILE_CHUNK: { file_id: id, index: 0, ciphertext: "AAAA" },
    FILE_END: { file_id: id },
    ACK: { msg_ref: "x" },
    ERROR: { code: "UNKNOWN_TYPE", detail: "x" },
    CTRL_CLOSE: {},
  };
  // A hello comes from someone new (Alice and Bob are online: theirs would stop at NAME_IN_USE); server frames
  // from the linked server.
  const from = type === "USER_HELLO"
    ? NEWCOMER
    : type.startsWith("SERVER_") || type.startsWith("PUBLIC_CHANNEL") || type === "USER_ADVERTISE" ||
        type === "USER_REMOVE" || type === "HEARTBEAT"
    ? S2
    : ALICE;
  return { type, from, to: BOB, ts: now, payload: structuredClone(payloads[type] ?? {}), sig: "" };
}

const hostileValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(1e308, -1e308, 2 ** 53, -(2 ** 53) - 2, 0.5, -1, 1e21, "", "\u0000", null, [], {}),
  fc.integer({ min: 1, max: 200 }).map((n) => JSON.parse("[".repeat(n) + "]".repeat(n))),
  fc.integer({ min: 1, max: 200 }).map((n) => JSON.parse('{"a":'.repeat(n) + "1" + "}".repeat(n))),
  fc.string({ maxLength: 2000 }),
);

/** A path into the payload: one key index per level (modulo the number of keys there). */
const keyPath = fc.array(fc.nat({ max: 11 }), { minLength: 1, maxLength: 4 });

type Mut =
  | { kind: "drop"; path: number[] }
  | { kind: "set"; path: number[]; value: unknown }
  | { kind: "top"; field: string; value: unknown };

const mutation: fc.Arbitrary<Mut> = fc.oneof(
  fc.record({ kind: fc.constant("drop" as const), path: keyPath }),
  fc.record({ kind: fc.constant("set" as const), path: keyPath, value: hostileValue }),
  fc.record({
    kind: fc.constant("top" as const),
    field: fc.constantFrom("type", "from", "to", "ts", "payload", "sig", "extra"),
    value: fc.oneof(
      hostileValue,
      fc.constantFrom(ALICE, BOB, S2, SERVER, NEWCOMER, "", "*", "MSG_PRIVATE", ...TYPES),
      fc.constant(T0),
    ),
  }),
);

function applyMut(frame: Record<string, unknown>, m: Mut): void {
  if (m.kind === "top") {
    frame[m.field] = structuredClone(m.value);
    return;
  }
  // Walk into the payload, one key per index of `path` (nested fields too: meta.age, servers[0].port).
  let node: unknown = frame.payload;
  for (let depth = 0; depth < m.path.length; depth++) {
    if (!node || typeof node !== "object") return;
    const o = node as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 0) {
      if (m.kind === "set") o["k" + m.path[depth]] = structuredClone(m.value);
      return;
    }
    const k = keys[m.path[depth] % keys.length];
    const child = o[k];
    if (depth < m.path.length - 1 && child && typeof child === "object") {
      node = child;
      continue;
    }
    if (m.kind === "drop") delete o[k];
    else o[k] = structuredClone(m.value);
    return;
  }
}

/** One fuzzed frame: its text, the connection it arrives on, and its signature outcome. */
export interface FuzzFrame {
  text: string;
  conn: number;
  sig: "valid" | "invalid" | "absent";
}

/** Fuzz steps: mostly frames, sometimes time passing, a connection closing or a new one opening. */
export type FuzzStep =
  | { kind: "frame"; frame: FuzzFrame }
  | { kind: "tick"; ms: number }
  | { kind: "close"; conn: number }
  | { kind: "open"; conn: number; addr: string };

export function frameArb(keys: FuzzKeys): fc.Arbitrary<FuzzFrame> {
  const text = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.tuple(fc.constantFrom(...TYPES), fc.array(mutation, { maxLength: 4 })).map(
        ([type, muts]) => {
          const f = template(type, keys, T0);
          for (const m of muts) applyMut(f, m);
          return JSON.stringify(f);
        },
      ),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(fc.constantFrom(...TYPES), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }))
        .map(
          ([type, cut, at, byte]) => {
            const s = JSON.stringify(template(type, keys, T0));
            if (cut % 2 === 0) return s.slice(0, cut % (s.length + 1));
            const i = at % s.length;
            return s.slice(0, i) + String.fromCharCode(byte) + s.slice(i + 1);
          },
        ),
    },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null") },
    { weight: 1, arbitrary: fc.string({ maxLength: 300 }) },
  );
  return fc.record({
    text,
    conn: fc.constantFrom(...CONNS),
    sig: fc.constantFrom("valid" as const, "invalid" as const, "absent" as const),
  });
}

export function stepArb(keys: FuzzKeys): fc.Arbitrary<FuzzStep> {
  return fc.oneof(
    { weight: 20, arbitrary: frameArb(keys).map((frame) => ({ kind: "frame" as const, frame })) },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 1, max: 120_000 }).map((ms) => ({ kind: "tick" as const, ms })),
    },
    { weight: 1, arbitrary: fc.constantFrom(...CONNS).map((conn) => ({ kind: "close" as const, conn })) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant("open" as const),
        conn: fc.constantFrom(...REOPEN),
        addr: fc.constantFrom("10.0.0.1", "10.0.0.2"),
      }),
    },
  );
}

/** Problems found by {@linkcode check} (empty when all is well). */
export function check(state: State, effects: Effect[]): string[] {
  const bad: string[] = [];
  for (const e of effects) {
    if (e.kind === "send" && e.frame.type === "ERROR") {
      const code = (e.frame.payload as { code?: unknown }).code;
      if (typeof code !== "string" || !SIX_CODES.has(code)) bad.push(`ERROR with code ${String(code)}`);
    }
  }
  for (const [id, c] of state.conns) {
    if (c.id !== id) bad.push(`conn ${id} holds id ${c.id}`);
    if (!["pending", "user", "server"].includes(c.role)) bad.push(`conn ${id} role ${c.role}`);
    if (c.role === "user" && (!c.userId || state.localUsers.get(c.userId) !== id)) {
      bad.push(`user conn ${id} (${c.userId}) is not its user's connection`);
    }
    if (c.strikes > state.config.limits.maxStrikes) bad.push(`conn ${id} has ${c.strikes} strikes`);
  }
  for (const [u, id] of state.localUsers) {
    const c = state.conns.get(id);
    if (!c || c.role !== "user" || c.userId !== u) bad.push(`local user ${u} points at conn ${id}`);
    if (state.presence.get(u)?.serverId !== state.config.serverId) {
      bad.push(`local user ${u} not present here`);
    }
  }
  for (const [s, id] of state.links) {
    const c = state.conns.get(id);
    if (!c || c.role !== "server" || c.serverId !== s) bad.push(`link ${s} points at conn ${id}`);
  }
  let inbound = 0;
  for (const c of state.conns.values()) if (!c.dial) inbound++;
  let counted = 0;
  for (const n of state.connsPerAddr.values()) counted += n;
  if (counted !== inbound) bad.push(`connsPerAddr counts ${counted}, ${inbound} inbound connections open`);
  if (state.seen.size > state.config.limits.seenMax) bad.push(`seen cache holds ${state.seen.size}`);
  for (const [u, n] of state.queued) {
    if (n > state.config.limits.maxQueuePerUser) bad.push(`queue for ${u} holds ${n}`);
  }
  if (state.helloBuckets.size > state.connsPerAddr.size + 16) {
    bad.push(`${state.helloBuckets.size} hello buckets`);
  }
  return bad;
}

/**
 * The signature a fuzzed frame carries when its outcome is "valid" / "invalid" (the template's empty `sig` is
 * filled in as the text is sent). The pipeline's verify port accepts {@linkcode VALID_SIG} from whatever key the
 * reducer expects for the frame (`expectedKey`), as RSA-PSS would from that key's holder; no key, no check.
 */
export const VALID_SIG = "fuzz-valid-signature";
const INVALID_SIG = "fuzz-invalid-signature";

/** A frame's text as sent: the drawn signature outcome put in the template's empty `sig`, if it has one. */
export function wireText(frame: FuzzFrame): string {
  if (frame.sig === "absent") return frame.text;
  return frame.text.replace('"sig":""', `"sig":"${frame.sig === "valid" ? VALID_SIG : INVALID_SIG}"`);
}

/**
 * The shell's inbound pipeline (lib/net/inbound.ts `onFrame`: size check, load shedding, parse, canonical text,
 * digest, signature check with the key the reducer expects, the late re-check, arrival order) in front of a
 * harness's reducer, with a synchronous digest and simulated signatures ({@linkcode VALID_SIG}) as its ports.
 */
export class Pipeline {
  /** What the reducer asked for since the last {@linkcode take}. */
  private effects: Effect[] = [];
  /** Exceptions from the reducer and failures the pipeline logged: bugs. */
  readonly problems: string[] = [];
  /** What is being fed (for problem reports). */
  current = "";
  private freshIds = 0;
  private readonly inbound = new Map<number, Connection>();
  readonly ctx: InboundContext;

  constructor(readonly h: Harness) {
    this.ctx = {
      limits: h.state.config.limits,
      counters: new Counters(),
      state: () => h.state,
      dispatch: (ev) => this.feed(ev),
      // A failure inside the pipeline is logged at "error" (frame.failed): a bug, and so a problem.
      log: new Logger(
        "error",
        (line) => this.problems.push(`pipeline logged: ${line.slice(0, 300)}`),
        () => h.now,
      ),
      now: () => h.now,
      digest: (text) => Promise.resolve(sha256Hex(text)),
      verify: (_key, _payload, sig) => Promise.resolve(sig === VALID_SIG),
      // Fresh ids for the reducer: a counter, so that a run is a function of its steps (replayable, shrinkable).
      fresh: () => `fuzz-fresh-${this.freshIds++}`,
    };
  }

  /** Hand an event to the reducer; an exception is recorded, not thrown. */
  feed(ev: Event): void {
    try {
      this.effects.push(...this.h.step(ev));
    } catch (e) {
      this.problems.push(`exception on ${ev.kind}${ev.kind === "frame" ? ` ${this.current}` : ""}: ${e}`);
    }
  }

  /**
   * The shell's `Connection` for `conn` (its inbound side: frames in flight, load shedding, arrival order, and
   * skipping once closed), over a socket that takes nothing (the fuzz reads the reducer's effects instead).
   */
  side(conn: number): Connection {
    let s = this.inbound.get(conn);
    if (!s) {
      s = new Connection({
        conn,
        addr: `fuzz-${conn}`,
        sock: {
          open: true,
          bufferedAmount: 0,
          send: () => {},
          close: () => {},
          onMessage: () => {},
          onClose: () => {},
        },
        limits: this.h.state.config.limits,
        timers: { set: () => 0, clear: () => {} },
        now: () => this.h.now,
        counters: this.ctx.counters,
        log: this.ctx.log,
        lingering: { add: () => {}, release: () => {} },
        stamp: (t) => t,
        onGone: () => {},
      });
      this.inbound.set(conn, s);
    }
    return s;
  }

  /** A connection closed or opened again: its inbound side starts over. */
  forget(conn: number): void {
    this.inbound.delete(conn);
  }

  /** A text arrives on `conn` (the pipeline works on it concurrently with earlier frames, as over a socket). */
  receive(conn: number, text: string): void {
    onFrame(this.ctx, conn, this.side(conn), text);
  }

  /** Wait until every frame received so far has reached the reducer; what it asked for meanwhile. */
  async settle(): Promise<Effect[]> {
    await Promise.all([...this.inbound.values()].map((s) => s.settled()));
    return this.take();
  }

  /** What the reducer asked for since the last call. */
  take(): Effect[] {
    const out = this.effects;
    this.effects = [];
    return out;
  }
}

/**
 * Run steps on a fresh world (or on `into`); returns the problems found (exceptions included) and the frames fed.
 * Each frame goes through the shell's own inbound pipeline ({@linkcode Pipeline}) to the reducer.
 */
export async function run(
  keys: FuzzKeys,
  steps: FuzzStep[],
  into?: Harness,
): Promise<{ problems: string[]; frames: number }> {
  const h = into ?? world(keys);
  const pipe = new Pipeline(h);
  const problems = pipe.problems;
  let frames = 0;
  for (const s of steps) {
    if (
      (s.kind === "frame" && !h.state.conns.has(s.frame.conn)) ||
      (s.kind === "close" && !h.state.conns.has(s.conn))
    ) {
      continue; // the shell drops frames on a closed connection
    }
    if (s.kind === "tick") {
      h.now += s.ms;
      pipe.feed({ kind: "tick", now: h.now });
    } else if (s.kind === "close") {
      pipe.forget(s.conn);
      pipe.feed({ kind: "closed", conn: s.conn, now: h.now });
    } else if (s.kind === "open") {
      if (h.state.conns.has(s.conn)) continue;
      pipe.forget(s.conn);
      pipe.feed({ kind: "connected", conn: s.conn, addr: s.addr, now: h.now });
    } else {
      frames++;
      pipe.current = JSON.stringify(s).slice(0, 300);
      pipe.receive(s.frame.conn, wireText(s.frame));
    }
    let effects = await pipe.settle();
    problems.push(...check(h.state, effects));
    // The shell closes what the reducer asks it to close (frames after that are skipped unread), and reports it.
    for (const e of effects) {
      if (e.kind !== "close" || !h.state.conns.has(e.conn)) continue;
      pipe.side(e.conn).close(1000, "the reducer closed it");
      pipe.forget(e.conn);
      pipe.feed({ kind: "closed", conn: e.conn, now: h.now });
      effects = pipe.take();
      problems.push(...check(h.state, effects));
    }
    if (problems.length) break;
  }
  return { problems, frames };
}
