/**
 * The reducer: `reduce(state, event) -> { state, effects }`, synchronous and deterministic. One table lists
 * every message type, which connection roles may send it, and its handler: the one place that names every legal
 * transition.
 *
 * @example
 * ```ts
 * let state = initState(config, [], []);
 * const step = reduce(state, { kind: "connected", conn: 1, addr: "127.0.0.1", now: 0 });
 * state = step.state; // step.effects: what the shell must do
 * ```
 * @module
 */
import type { AnyEnvelope, Envelope } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import type { MessageType } from "../protocol/messages.ts";
import { SeenCache } from "./dedupe.ts";
import {
  dialConnected,
  dialedLinkUp,
  dialFailed,
  linkDown,
  linkTimers,
  onAnnounce,
  onJoin,
  onLinkHello,
  onRelinkWelcome,
  onRemoteAdvert,
  onRemoteRemove,
  onSoftware,
  onWelcome,
  started,
} from "./federation.ts";
import { bucket, forgetFullHelloBuckets, staleness, takeToken } from "./limits.ts";
import { Out } from "./out.ts";
import { userLeft } from "./presence.ts";
import { direct, serverDeliver } from "./routing.ts";
import type { Conn, Event, Loaded, NodeConfig, Role, State, Step } from "./types.ts";
import {
  channelReady,
  onChannelAdd,
  onChannelUpdated,
  onKeyShareFromServer,
  publicFromServer,
  publicFromUser,
} from "./channel.ts";
import { fileTimers, onFile } from "./files.ts";
import { ack, outboxAcked } from "./offline.ts";
import { hello } from "./users.ts";
import { expectedKey, signedUnderAlias, USER_ORIGINATED } from "./verify.ts";

/** A fresh state, with what the store holds (bound users, pinned servers, queues, the channel). */
export function initState(config: NodeConfig, loaded: Partial<Loaded> = {}): State {
  return {
    config,
    conns: new Map(),
    connsPerAddr: new Map(),
    helloBuckets: new Map(),
    localUsers: new Map(),
    users: new Map((loaded.users ?? []).map((u) => [u.userId, u])),
    presence: new Map(),
    presenceTs: new Map(),
    seen: new SeenCache(config.limits.seenTtlMs, config.limits.seenMax),
    servers: new Map((loaded.servers ?? []).map((s) => [s.serverId, s])),
    links: new Map(),
    linkDialer: new Map(),
    dials: new Map(),
    backoff: new Map(),
    helloKind: new Map(),
    peerSoftware: new Map(),
    nextToken: 1,
    join: { phase: "idle", retryMs: 1000 },
    advertise: { host: "", port: 0 },
    channel: loaded.channel
      ? {
        version: loaded.channel.version,
        creatorPub: loaded.channel.creatorPub,
        members: new Set(loaded.channel.members),
      }
      : null,
    channelPending: false,
    queued: new Map(loaded.queued ?? []),
    outbox: new Map(loaded.outbox ?? []),
    homes: new Map(loaded.homes ?? []),
    transfers: new Map(),
    acceptedRefs: new Map(loaded.acceptedRefs ?? []),
  };
}

type Handler = (out: Out, conn: Conn, env: AnyEnvelope, fresh?: string) => void;
const fileRule: Handler = (out, conn, env) =>
  onFile(out, conn, env as Envelope<"FILE_START"> | Envelope<"FILE_CHUNK"> | Envelope<"FILE_END">);
type Rule = Partial<Record<Role, Handler>>;

const logOnly: Handler = (out, conn, env) =>
  out.log("info", `peer.${env.type.toLowerCase()}`, {
    conn: conn.id,
    server: conn.serverId ?? env.from,
    ...(env.type === "ERROR" ? { code: env.payload.code, detail: env.payload.detail ?? "" } : {}),
  });

/**
 * Every message type this node accepts, and from which connection role. A type missing here, or sent from a role
 * not listed, is refused with UNKNOWN_TYPE.
 */
const RULES: Partial<Record<MessageType, Rule>> = {
  USER_HELLO: {
    pending: (out, conn, env) => hello(out, conn, env as Envelope<"USER_HELLO">), // dialed conns: refused in onFrame
  },
  MSG_DIRECT: { user: (out, conn, env) => direct(out, conn.id, env as Envelope<"MSG_DIRECT">) },
  SERVER_HELLO_JOIN: {
    pending: (out, conn, env, fresh) => onJoin(out, conn, env as Envelope<"SERVER_HELLO_JOIN">, fresh),
  },
  SERVER_HELLO_LINK: {
    pending: (out, conn, env) => onLinkHello(out, conn, env as Envelope<"SERVER_HELLO_LINK">),
  },
  SERVER_ANNOUNCE: {
    pending: (out, conn, env) => onLinkHello(out, conn, env as Envelope<"SERVER_ANNOUNCE">),
    server: (out, conn, env) => onAnnounce(out, conn, env as Envelope<"SERVER_ANNOUNCE">),
  },
  SERVER_WELCOME: { pending: (out, conn, env) => onWelcome(out, conn, env as Envelope<"SERVER_WELCOME">) },
  USER_ADVERTISE: {
    server: (out, conn, env) => onRemoteAdvert(out, conn, env as Envelope<"USER_ADVERTISE">),
  },
  USER_REMOVE: { server: (out, conn, env) => onRemoteRemove(out, conn, env as Envelope<"USER_REMOVE">) },
  SERVER_DELIVER: { server: (out, conn, env) => serverDeliver(out, conn, env as Envelope<"SERVER_DELIVER">) },
  MSG_PUBLIC_CHANNEL: {
    user: (out, conn, env) => publicFromUser(out, conn, env as Envelope<"MSG_PUBLIC_CHANNEL">),
    server: (out, conn, env) => publicFromServer(out, conn, env as Envelope<"MSG_PUBLIC_CHANNEL">),
  },
  FILE_START: { user: fileRule, server: fileRule },
  FILE_CHUNK: { user: fileRule, server: fileRule },
  FILE_END: { user: fileRule, server: fileRule },
  PUBLIC_CHANNEL_ADD: {
    server: (out, conn, env) => onChannelAdd(out, conn, env as Envelope<"PUBLIC_CHANNEL_ADD">),
  },
  PUBLIC_CHANNEL_UPDATED: {
    server: (out, conn, env) => onChannelUpdated(out, conn, env as Envelope<"PUBLIC_CHANNEL_UPDATED">),
  },
  PUBLIC_CHANNEL_KEY_SHARE: {
    server: (out, conn, env) => onKeyShareFromServer(out, conn, env as Envelope<"PUBLIC_CHANNEL_KEY_SHARE">),
  },
  HEARTBEAT: {
    server: (_out, conn, env) => {
      if (env.from === conn.serverId) conn.peerHeartbeats = true; // not an echo or a relay of another's
    },
  },
  ERROR: { server: logOnly, pending: logOnly },
  ACK: {
    server: (out, conn, env) => {
      const ref = (env as Envelope<"ACK">).payload.msg_ref;
      if (conn.serverId && out.state.outbox.get(conn.serverId)) outboxAcked(out, conn.serverId, ref);
      else logOnly(out, conn, env);
    },
  },
  CTRL_CLOSE: {
    pending: (out, conn) => out.close(conn.id, 1000, "closed by peer"),
    user: (out, conn) => out.close(conn.id, 1000, "closed by peer"),
    server: (out, conn) => out.close(conn.id, 1000, "closed by peer"),
  },
};

/** First frames that identify a server, and whether they must be signed. */
const SERVER_HELLOS = new Set<MessageType>(["SERVER_HELLO_JOIN", "SERVER_HELLO_LINK", "SERVER_ANNOUNCE"]);

/**
 * Frame types whose deployed shapes vary (PROFILE §15): on a server link, one we cannot read is ignored (logged at
 * debug), never answered with an ERROR or counted as a strike.
 */
const TOLERATED_SHAPES = new Set(["PUBLIC_CHANNEL_UPDATED", "PUBLIC_CHANNEL_KEY_SHARE"]);

/** Hellos another server may relay to us along with everything else (see onFrame). */
const RELAYED_HELLOS = new Set<MessageType>(["SERVER_HELLO_JOIN", "SERVER_HELLO_LINK", "SERVER_WELCOME"]);

/** What a connection we dialed may send before it is a link: the introducer's answer, a refusal, a close. */
const DIALED_FIRST = new Set<MessageType>(["SERVER_WELCOME", "ERROR", "CTRL_CLOSE"]);

/**
 * Whether a pending connection may send `type`: one we dialed only what answers our hello; one that dialed us
 * anything but an answer to a hello it never got (a SERVER_WELCOME there is refused like any unexpected frame).
 * (A link we dialed is judged as a link from its first frame on, see onFrame.)
 */
function pendingAllows(conn: Conn, type: MessageType): boolean {
  if (conn.role !== "pending") return true;
  return conn.dial ? DIALED_FIRST.has(type) : type !== "SERVER_WELCOME";
}

function refusal(conn: Conn, env: AnyEnvelope, rule: Rule | undefined): string {
  if (!rule) return `${env.type} is not supported by this node`;
  if (conn.role === "pending") {
    return conn.dial
      ? `${env.type} is not expected before SERVER_WELCOME`
      : `the first frame must be USER_HELLO (or a server hello), not ${env.type}`;
  }
  if (env.type === "USER_HELLO") {
    return `this connection is already identified as ${conn.userId ?? conn.serverId}`;
  }
  return `${env.type} is not accepted from a ${conn.role === "user" ? "user" : "server"}`;
}

function onFrame(out: Out, ev: Extract<Event, { kind: "frame" }>): void {
  const { state } = out;
  const conn = state.conns.get(ev.conn);
  if (!conn) return;
  conn.lastSeen = ev.now;
  const limits = state.config.limits;
  if (!takeToken(conn, limits, ev.now)) {
    if (!conn.throttled) {
      conn.throttled = true;
      const b = bucket(conn, limits);
      out.error(
        conn.id,
        conn.userId ?? conn.serverId ?? "",
        "UNKNOWN_TYPE",
        `rate limit: at most ${b.ratePerSec} frames/s (burst ${b.burst}); frames dropped`,
      );
    }
    return;
  }
  conn.throttled = false;
  // A link we dialed is up only at the peer's first verified frame (PROFILE §15); until then its frames are
  // judged as a link's.
  const linkDial = conn.role === "pending" && conn.dial?.purpose === "link" && conn.dial.serverId
    ? conn.dial
    : undefined;
  const role: Role = linkDial ? "server" : conn.role;
  const linkId = conn.serverId ?? linkDial?.serverId;
  if (!ev.parsed.ok) {
    const e = ev.parsed.error;
    // Never answer an ERROR with an ERROR (two peers would bounce them forever); deployed channel shapes we cannot
    // read are ignored on server links (PROFILE §15).
    if (e.type === "ERROR" || (role === "server" && e.type !== undefined && TOLERATED_SHAPES.has(e.type))) {
      return out.log("debug", "frame.ignored", { conn: conn.id, type: e.type, detail: e.detail });
    }
    return out.error(conn.id, conn.userId ?? conn.serverId ?? e.from ?? "", e.code, e.detail, true);
  }
  let env = ev.parsed.envelope;
  if (role === "server") {
    // PROFILE §15 echoes: some servers relay every frame to every link, ours included. A frame from our own id
    // (or a user's frame from one of our local users) is our own coming back: drop it, no ERROR, no strike.
    if (
      env.from === state.config.serverId || (USER_ORIGINATED.has(env.type) && state.localUsers.has(env.from))
    ) {
      return out.log("debug", "frame.echo", { conn: conn.id, type: env.type });
    }
    // The same servers relay other servers' hellos too: a JOIN, LINK or WELCOME on an established link that is
    // not from the link's server was never meant for us. Ignored, not struck.
    if (RELAYED_HELLOS.has(env.type) && conn.role === "server" && env.from !== linkId) {
      return out.log("debug", "frame.relayed_hello", { conn: conn.id, type: env.type, from: env.from });
    }
    // PROFILE §15: signed under another name ("key1", "server"): verified with the link's pinned key (see
    // expectedKey) and treated as from the link's server.
    if (signedUnderAlias(state, linkId, env)) {
      out.alias = env.from;
      env = { ...env, from: linkId! } as AnyEnvelope;
    }
  }
  const reply = conn.userId ?? conn.serverId ?? env.from;
  // A duplicate is dropped silently, whatever the connection's state (PROFILE §11). Only frames that pass every
  // check below are recorded, so a forged frame cannot poison the cache against the real one.
  const seenKey = SeenCache.key(env.ts, env.from, env.to, ev.digest);
  if (!state.config.labReplay && state.seen.has(seenKey, ev.now)) {
    out.log("debug", "frame.duplicate", { conn: conn.id, type: env.type });
    // A resent outbox frame we already hold: confirm again, or the sender keeps resending it.
    if (env.type === "SERVER_DELIVER" && env.payload.ack && conn.role === "server") {
      ack(out, conn.id, reply, ev.digest);
    }
    return;
  }
  if (env.type === "ERROR" && linkDial) {
    // The peer refused our hello. A refused LINK is redialed with JOIN (PROFILE §15): see dialFailed.
    logOnly(out, conn, env);
    return out.close(conn.id, 1000, `${env.type} ${env.payload.code} in answer to our hello`);
  }
  const rule = RULES[env.type];
  let handler = rule?.[role];
  if (linkDial && env.type === "SERVER_WELCOME") {
    handler = (o, c, e) => onRelinkWelcome(o, c, e as Envelope<"SERVER_WELCOME">);
  }
  if (!handler || (role === "pending" && !pendingAllows(conn, env.type))) {
    if (env.type === "ERROR") return logOnly(out, conn, env);
    return out.error(conn.id, reply, "UNKNOWN_TYPE", refusal(conn, env, rule), true);
  }
  if (env.type === "CTRL_CLOSE") return handler(out, conn, env);
  if (conn.role === "user" && env.from !== conn.userId) {
    return out.error(conn.id, reply, "INVALID_SIG", `'from' must be your own user id ${conn.userId}`, true);
  }
  // Signatures (PROFILE §3): every server frame must carry a valid one (a JOIN may be unsigned); a user's
  // optional sig must verify when present; and it must have verified with the key in force now.
  const mustSign = role === "server" || conn.dial !== undefined ||
    (conn.role === "pending" && SERVER_HELLOS.has(env.type) && env.type !== "SERVER_HELLO_JOIN");
  const want = expectedKey(state, conn, env);
  const sigBad = ev.sig === "invalid" || (mustSign && ev.sig !== "valid") ||
    (ev.sig === "valid" &&
      (!want || !ev.sigKey || (want !== ev.sigKey && !sameKeyMaterial(want, ev.sigKey))));
  if (sigBad) {
    if (env.type === "ERROR") return logOnly(out, conn, env); // never answer an ERROR with an ERROR
    return out.error(conn.id, reply, "INVALID_SIG", sigProblem(conn, env, want, ev.sig, out.alias), true);
  }
  // Freshness applies to frames the peer originated; relayed frames keep their original ts (PROFILE §11).
  const originated = role !== "server" || env.from === linkId;
  if (!state.config.labReplay && originated) {
    const stale = staleness(env.ts, ev.now, limits);
    if (stale) return out.error(conn.id, reply, "TIMEOUT", stale);
  }
  // A dialed link that loses the duplicate-link tie-break at its first frame is closed; the frame is not
  // recorded, so the copy the peer sends on the link that stays is not mistaken for a duplicate.
  if (linkDial && !dialedLinkUp(out, conn)) return;
  if (!state.config.labReplay) state.seen.add(seenKey, ev.now);
  out.digest = ev.digest;
  handler(out, conn, env, ev.fresh);
}

/** The detail of an INVALID_SIG: what was missing or wrong, and with which key (PROFILE §15: no misleading detail). */
function sigProblem(
  conn: Conn,
  env: AnyEnvelope,
  want: string | undefined,
  sig: string,
  alias: string | undefined,
): string {
  const what = sig === "absent" ? "is missing" : "does not verify";
  if (conn.role === "user") return `signature on ${env.type} ${what} with your key`;
  if (alias !== undefined) {
    return `signature on ${env.type} from "${alias}" (not a server we know, so read as from ${env.from}) ${what} with the pinned key of ${env.from}`;
  }
  if (!want) {
    return env.type === "SERVER_ANNOUNCE" || SERVER_HELLOS.has(env.type)
      ? `${env.type} carries no pubkey to verify its signature with`
      : `${env.type} from ${env.from}: no key is pinned for that server, so its signature cannot be checked`;
  }
  return `signature on ${env.type} ${what} with the pinned key of ${env.from}`;
}

function newConn(id: number, addr: string, now: number, burst: number): Conn {
  return {
    id,
    addr,
    openedAt: now,
    role: "pending",
    strikes: 0,
    tokens: burst,
    refilledAt: now,
    throttled: false,
    pemDialect: false,
    lastSeen: now,
    lastSent: now,
  };
}

/** Apply one event. The state object is updated in place and returned. */
export function reduce(state: State, event: Event): Step {
  const now = event.now;
  const out = new Out(state, now);
  switch (event.kind) {
    case "started":
      started(out, event.host, event.port);
      break;
    case "connected": {
      const conn = newConn(event.conn, event.addr, now, state.config.limits.rateBurst);
      state.conns.set(event.conn, conn);
      if (event.dial !== undefined) {
        const intent = state.dials.get(event.dial);
        state.dials.delete(event.dial);
        if (intent) dialConnected(out, conn, intent);
        else out.close(event.conn, 1000, "unexpected dial");
        break;
      }
      const n = (state.connsPerAddr.get(event.addr) ?? 0) + 1;
      state.connsPerAddr.set(event.addr, n);
      if (n > state.config.limits.maxConnsPerAddr) {
        out.close(
          event.conn,
          1008,
          `too many connections from one address (limit ${state.config.limits.maxConnsPerAddr})`,
        );
      }
      break;
    }
    case "dialFailed": {
      const intent = state.dials.get(event.token);
      state.dials.delete(event.token);
      if (intent) dialFailed(out, intent, event.reason);
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
      if (!conn.dial) {
        const n = (state.connsPerAddr.get(conn.addr) ?? 1) - 1;
        if (n <= 0) state.connsPerAddr.delete(conn.addr);
        else state.connsPerAddr.set(conn.addr, n);
      }
      if (conn.userId && state.localUsers.get(conn.userId) === conn.id) userLeft(out, conn.userId);
      if (conn.role === "server") linkDown(out, conn, "closed");
      else if (conn.dial) {
        dialFailed(
          out,
          conn.dial,
          conn.openedAt === Infinity ? "no SERVER_WELCOME" : "closed before the peer's first frame",
          conn.dial.purpose === "link",
        );
      }
      break;
    }
    case "tick":
      state.seen.expire(now);
      forgetFullHelloBuckets(state, now);
      for (const [u, ts] of state.presenceTs) {
        if (!state.presence.has(u) && ts < now - state.config.limits.seenTtlMs) state.presenceTs.delete(u);
      }
      for (const conn of state.conns.values()) {
        if (conn.role === "pending" && !conn.dial && now - conn.openedAt > state.config.limits.firstFrameMs) {
          out.error(
            conn.id,
            "",
            "TIMEOUT",
            `no USER_HELLO within ${state.config.limits.firstFrameMs / 1000} s`,
          );
          out.close(conn.id, 1008, "first frame timeout");
          conn.openedAt = Infinity; // report once
        }
      }
      linkTimers(out);
      fileTimers(out);
      break;
    case "software":
      onSoftware(out, event.serverId, event.software, event.tls);
      break;
    case "channelReady":
      channelReady(out, event.version, event.creatorPub);
      break;
    case "channelFailed":
      state.channelPending = false;
      out.log("error", "channel.failed", { reason: event.reason });
      break;
  }
  return { state, effects: out.effects };
}
