/**
 * The reducer: `reduce(state, event) -> { state, effects }`, synchronous and deterministic. Frames are judged by
 * the rule table (rules.ts: one row per message type, the one place that names every legal transition) and the
 * checks every frame passes here (rate, echoes, duplicates, signature, freshness); other events are in
 * events.ts, the clock's tick in timers.ts. After each step, {@linkcode nextDeadline} (a pure query on the state,
 * not a field of the step) says when the reducer next needs a tick: the shell arms one timer for it.
 *
 * @example
 * ```ts
 * import { DEFAULT_FEDERATION, DEFAULT_LIMITS, type NodeConfig } from "./types.ts";
 *
 * const config: NodeConfig = {
 *   serverId: crypto.randomUUID(),
 *   serverPub: "our base64url DER SPKI",
 *   serverPubPem: "our base64url PEM text",
 *   limits: { ...DEFAULT_LIMITS },
 *   federation: { ...DEFAULT_FEDERATION },
 *   labWeakKeys: false,
 *   labReplay: false,
 * };
 * let state = initState(config);
 * const step = reduce(state, { kind: "connected", conn: 1, addr: "127.0.0.1", now: 0 });
 * state = step.state; // step.effects: what the shell must do
 * ```
 * @module
 */
import type { AnyEnvelope } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import { channelReady } from "./channel.ts";
import { SeenCache } from "./dedupe.ts";
import { onClosed, onConnected, onDialFailed, onOversize, onUndelivered } from "./events.ts";
import { started } from "./join.ts";
import { confirmPin, dialedLinkUp, onSoftware } from "./links.ts";
import { bucket, staleness, takeToken } from "./limits.ts";
import { Out } from "./out.ts";
import { onTick } from "./timers.ts";
import { logOnly, type Rule, ruleOf, ruleOfName, type RuleRole, tolerated, userOriginated } from "./rules.ts";
import type { MessageType } from "../protocol/messages.ts";
import type { Conn, Event, State, Step } from "./types.ts";
import { expectedKey, signedUnderAlias } from "./verify.ts";

export { initState } from "./state.ts";
export { nextDeadline } from "./timers.ts";

function refusal(conn: Conn, env: AnyEnvelope, known: boolean): string {
  if (!known) return `${env.type} is not supported by this node`;
  if (conn.role === "pending") {
    return conn.dial
      ? `${env.type} is not expected before SERVER_WELCOME`
      : `the first frame must be USER_HELLO (or a server hello), not ${env.type}`;
  }
  if (ruleOf(env)?.onlyFirst) {
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
  const role: RuleRole = linkDial ? "server" : conn.role === "pending" && conn.dial ? "dialed" : conn.role;
  const linkId = conn.serverId ?? linkDial?.serverId;
  if (!ev.parsed.ok) {
    const e = ev.parsed.error;
    // Never answer an ERROR with an ERROR (two peers would bounce them forever); deployed channel shapes we cannot
    // read are ignored on server links (PROFILE §15).
    if (ruleOfName(e.type)?.quiet || (role === "server" && tolerated(e.type))) {
      return out.log("debug", "frame.ignored", { conn: conn.id, type: e.type ?? "", detail: e.detail });
    }
    return out.error(conn.id, conn.userId ?? conn.serverId ?? e.from ?? "", e.code, e.detail, true);
  }
  let env = ev.parsed.envelope;
  if (role === "server") {
    // PROFILE §15 echoes: some servers relay every frame to every link, ours included. A frame from our own id
    // (or a user's frame from one of our local users) is our own coming back: drop it, no ERROR, no strike.
    if (
      env.from === state.config.serverId || (userOriginated(env) && state.localUsers.has(env.from))
    ) {
      return out.log("debug", "frame.echo", { conn: conn.id, type: env.type });
    }
    // The same servers relay other servers' hellos too: a JOIN, LINK or WELCOME on an established link that is
    // not from the link's server was never meant for us. Ignored, not struck.
    if (ruleOf(env)?.relayedHello && conn.role === "server" && env.from !== linkId) {
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
  const rule0 = ruleOf(env);
  // The row's fields for this frame's type (each row's functions take its own type's envelope).
  const row = rule0 as Rule<MessageType> | undefined;
  // A duplicate is dropped silently, whatever the connection's state (PROFILE §11). Only frames that pass every
  // check below are recorded, so a forged frame cannot poison the cache against the real one. PROFILE §16: for
  // the types that carry content, the key is what is signed (type, origin, payload digest), not the envelope.
  const byPayload = rule0?.replay === "payload";
  const seenKey = byPayload
    ? SeenCache.payloadKey(env.type, rule0.userOriginated ? "" : env.from, ev.digest)
    : SeenCache.key(env.ts, env.from, env.to, ev.digest);
  if (
    !state.config.labReplay && state.seen.has(seenKey, ev.now) && !row?.notDuplicate?.(state, env)
  ) {
    out.log("debug", "frame.duplicate", { conn: conn.id, type: env.type });
    row?.onDuplicate?.(out, conn, env, ev.digest);
    return;
  }
  if (row?.unverifiedJoinAnswer && conn.dial?.purpose === "join" && ev.sig !== "valid") {
    return row.unverifiedJoinAnswer(out, conn, env, ev.sig);
  }
  if (row?.answersOurHello && (linkDial || (role === "dialed" && conn.dial?.purpose === "join"))) {
    return row.answersOurHello(out, conn, env);
  }
  const rule = rule0;
  const handler = rule && (linkDial && rule.relink ? rule.relink : rule.from[role]);
  if (!rule || !handler) {
    if (row?.quiet) return logOnly(out, conn, env);
    return out.error(conn.id, reply, "UNKNOWN_TYPE", refusal(conn, env, rule !== undefined), true);
  }
  if (rule.sign === "unchecked") return handler(out, conn, env);
  if (conn.role === "user" && env.from !== conn.userId) {
    return out.error(conn.id, reply, "INVALID_SIG", `'from' must be your own user id ${conn.userId}`, true);
  }
  // Signatures (PROFILE §3, the row's `sign`): every server frame must carry a valid one (an inbound JOIN may be
  // unsigned); a user's optional sig must verify when present; and it must have verified with the key in force now.
  const mustSign = role === "server" || conn.dial !== undefined || rule.sign === "always";
  const want = expectedKey(state, conn, env);
  const sigBad = ev.sig === "invalid" || (mustSign && ev.sig !== "valid") ||
    (ev.sig === "valid" &&
      (!want || !ev.sigKey || (want !== ev.sigKey && !sameKeyMaterial(want, ev.sigKey))));
  if (sigBad) {
    if (row?.quiet) return logOnly(out, conn, env); // never answer an ERROR with an ERROR
    const refs = { msg_ref: msgRef(ev.digest) }; // which frame of theirs was refused
    out.error(conn.id, reply, "INVALID_SIG", sigProblem(conn, env, want, ev.sig, out.alias), true, refs);
    if (rule.closeOnRefusal && conn.role === "pending") out.close(conn.id, 1008, `${env.type} refused`);
    return;
  }
  // Freshness (the row's `fresh`) applies to frames the peer originated; relayed frames keep their original ts
  // (PROFILE §11).
  // PROFILE §16: a relayed or forwarded frame is judged on the signed time in its payload, when it has one.
  const originated = role !== "server" || env.from === linkId;
  const signed = rule.signedTime
    ? (rule.signedTime as (e: AnyEnvelope) => number | undefined)(env)
    : undefined;
  if (!state.config.labReplay && rule.fresh === "origin" && (originated || signed !== undefined)) {
    const stale = staleness(signed ?? env.ts, ev.now, limits);
    const refs = { msg_ref: msgRef(ev.digest) };
    if (stale) {
      return out.error(
        conn.id,
        reply,
        "TIMEOUT",
        signed === undefined ? stale : `signed ${stale}`,
        false,
        refs,
      );
    }
  }
  // A dialed link that loses the duplicate-link tie-break at its first frame is closed; the frame is not
  // recorded, so the copy the peer sends on the link that stays is not mistaken for a duplicate.
  if (linkDial && !dialedLinkUp(out, conn)) return;
  if (!state.config.labReplay) {
    if (byPayload) {
      // Kept as long as a copy could pass the freshness check, and across restarts (file chunks excepted: a
      // chunk of a transfer the node no longer knows goes nowhere).
      const exp = (signed ?? env.ts) + limits.freshnessMs + 1000;
      state.seen.add(seenKey, ev.now, exp);
      // Frames from servers only: a user's own frames come over the session they authenticated.
      if (role === "server" && !rule.replayInMemory) {
        out.persist({ op: "seen", key: seenKey, exp: Math.max(exp, ev.now + limits.seenTtlMs) });
      }
    } else state.seen.add(seenKey, ev.now);
  }
  // The first verified frame from a server on its link makes a pin resting on an unsigned JOIN real (PROFILE §16).
  if (role === "server" && ev.sig === "valid" && linkId !== undefined && env.from === linkId) {
    confirmPin(out, linkId);
  }
  out.digest = ev.digest;
  out.sig = ev.sig;
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
    return ruleOf(env)?.hello === "server"
      ? `${env.type} carries no pubkey to verify its signature with`
      : `${env.type} from ${env.from}: no key is pinned for that server, so its signature cannot be checked`;
  }
  return `signature on ${env.type} ${what} with the pinned key of ${env.from}`;
}

/** Apply one event. The state object is updated in place and returned. */
export function reduce(state: State, event: Event): Step {
  const out = new Out(state, event.now);
  switch (event.kind) {
    case "started":
      started(out, event.host, event.port);
      break;
    case "connected":
      onConnected(out, event);
      break;
    case "dialFailed":
      onDialFailed(out, event);
      break;
    case "frame":
      onFrame(out, event);
      break;
    case "oversize":
      onOversize(out, event);
      break;
    case "closed":
      onClosed(out, event);
      break;
    case "undelivered":
      onUndelivered(out, event);
      break;
    case "tick":
      onTick(out);
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
