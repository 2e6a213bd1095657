/**
 * The reducer: `reduce(state, event) -> { state, effects }`, synchronous and deterministic. One table lists
 * every message type, who may send it, and its handler (the one place that names every legal transition).
 *
 * @example
 * ```ts
 * let state = initState(config, []);
 * const step = reduce(state, { kind: "connected", conn: 1, addr: "127.0.0.1", now: 0 });
 * state = step.state; // step.effects: what the shell must do
 * ```
 * @module
 */
import type { AnyEnvelope, Envelope } from "../protocol/envelope.ts";
import type { MessageType } from "../protocol/messages.ts";
import { SeenCache } from "./dedupe.ts";
import { staleness, takeToken } from "./limits.ts";
import { Out } from "./out.ts";
import { userLeft } from "./presence.ts";
import { direct } from "./routing.ts";
import type { Conn, Event, NodeConfig, Role, State, Step, UserRecord } from "./types.ts";
import { hello } from "./users.ts";

/** A fresh state, with the users already bound in the store. */
export function initState(config: NodeConfig, users: UserRecord[]): State {
  return {
    config,
    conns: new Map(),
    connsPerAddr: new Map(),
    localUsers: new Map(),
    users: new Map(users.map((u) => [u.userId, u])),
    presence: new Map(),
    seen: new SeenCache(config.limits.seenTtlMs, config.limits.seenMax),
  };
}

interface Rule {
  /** Roles allowed to send this type. */
  from: Role[];
  handle(out: Out, conn: Conn, env: AnyEnvelope): void;
}

const USER_ONLY: Role[] = ["user"];

/** Every message type this node accepts, and from whom. Types missing here are refused with UNKNOWN_TYPE. */
const RULES: Partial<Record<MessageType, Rule>> = {
  USER_HELLO: {
    from: ["pending"],
    handle: (out, conn, env) => hello(out, conn, env as Envelope<"USER_HELLO">),
  },
  MSG_DIRECT: {
    from: USER_ONLY,
    handle: (out, conn, env) => direct(out, conn.id, env as Envelope<"MSG_DIRECT">),
  },
  CTRL_CLOSE: {
    from: ["pending", "user"],
    handle: (out, conn) => out.close(conn.id, 1000, "closed by peer"),
  },
};

function onFrame(out: Out, ev: Extract<Event, { kind: "frame" }>): void {
  const { state } = out;
  const conn = state.conns.get(ev.conn);
  if (!conn) return;
  const limits = state.config.limits;
  if (!takeToken(conn, limits, ev.now)) {
    if (!conn.throttled) {
      conn.throttled = true;
      out.error(
        conn.id,
        conn.userId ?? "",
        "UNKNOWN_TYPE",
        `rate limit: at most ${limits.ratePerSec} frames/s (burst ${limits.rateBurst}); frames dropped`,
      );
    }
    return;
  }
  conn.throttled = false;
  if (!ev.parsed.ok) {
    const e = ev.parsed.error;
    return out.error(conn.id, conn.userId ?? e.from ?? "", e.code, e.detail, true);
  }
  const env = ev.parsed.envelope;
  const reply = conn.userId ?? env.from;
  const rule = RULES[env.type];
  if (!rule || !rule.from.includes(conn.role)) {
    const why = !rule
      ? `${env.type} is not supported by this node`
      : conn.role === "pending"
      ? `the first frame must be USER_HELLO, not ${env.type}`
      : env.type === "USER_HELLO"
      ? `this connection is already identified as ${conn.userId}`
      : `${env.type} is not accepted from a user`;
    return out.error(conn.id, reply, "UNKNOWN_TYPE", why, true);
  }
  if (env.type === "CTRL_CLOSE") return rule.handle(out, conn, env);
  if (conn.role === "user" && env.from !== conn.userId) {
    return out.error(conn.id, reply, "INVALID_SIG", `'from' must be your own user id ${conn.userId}`, true);
  }
  if (!state.config.labReplay) {
    const stale = staleness(env.ts, ev.now, limits);
    if (stale) return out.error(conn.id, reply, "TIMEOUT", stale);
  }
  if (
    ev.sig === "invalid" ||
    (ev.sig === "valid" && conn.role === "user" && !sameBoundKey(state, conn, ev.sigKey))
  ) {
    return out.error(
      conn.id,
      reply,
      "INVALID_SIG",
      `signature on ${env.type} does not verify with your key`,
      true,
    );
  }
  if (
    !state.config.labReplay && !state.seen.add(SeenCache.key(env.ts, env.from, env.to, ev.digest), ev.now)
  ) {
    out.log("debug", "frame.duplicate", { conn: conn.id, type: env.type });
    return;
  }
  rule.handle(out, conn, env);
}

function sameBoundKey(state: State, conn: Conn, key: string | undefined): boolean {
  const user = conn.userId ? state.users.get(conn.userId) : undefined;
  return !!user && user.pubkey === key;
}

/** Apply one event. The state object is updated in place and returned. */
export function reduce(state: State, event: Event): Step {
  const now = event.now;
  const out = new Out(state, now);
  switch (event.kind) {
    case "connected": {
      const n = (state.connsPerAddr.get(event.addr) ?? 0) + 1;
      state.connsPerAddr.set(event.addr, n);
      state.conns.set(event.conn, {
        id: event.conn,
        addr: event.addr,
        openedAt: now,
        role: "pending",
        strikes: 0,
        tokens: state.config.limits.rateBurst,
        refilledAt: now,
        throttled: false,
      });
      if (n > state.config.limits.maxConnsPerAddr) {
        out.close(
          event.conn,
          1008,
          `too many connections from one address (limit ${state.config.limits.maxConnsPerAddr})`,
        );
      }
      break;
    }
    case "frame":
      onFrame(out, event);
      break;
    case "oversize":
      out.log("info", "frame.too_large", { conn: event.conn, bytes: event.bytes });
      out.close(
        event.conn,
        1009,
        `frame of ${event.bytes} bytes exceeds the ${state.config.limits.maxFrameBytes}-byte limit`,
      );
      break;
    case "closed": {
      const conn = state.conns.get(event.conn);
      if (!conn) break;
      state.conns.delete(event.conn);
      const n = (state.connsPerAddr.get(conn.addr) ?? 1) - 1;
      if (n <= 0) state.connsPerAddr.delete(conn.addr);
      else state.connsPerAddr.set(conn.addr, n);
      if (conn.userId && state.localUsers.get(conn.userId) === conn.id) userLeft(out, conn.userId);
      break;
    }
    case "tick":
      state.seen.expire(now);
      for (const conn of state.conns.values()) {
        if (conn.role === "pending" && now - conn.openedAt > state.config.limits.firstFrameMs) {
          out.error(
            conn.id,
            "",
            "TIMEOUT",
            `no USER_HELLO within ${state.config.limits.firstFrameMs / 1000} s`,
          );
          out.close(conn.id, 1008, "first frame timeout");
          conn.role = "pending";
          conn.openedAt = Infinity; // report once
        }
      }
      break;
  }
  return { state, effects: out.effects };
}
