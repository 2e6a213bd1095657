/**
 * Server links (SOCP §8, PROFILE §3, §12, §15): dials and the hellos they open with, pinned keys, the link
 * hellos of servers that dial us, liveness (heartbeats, silence), reconnects with backoff.
 *
 * Either side may dial. When two live links to one server exist (both sides dialed at once), both ends keep the
 * link dialed by the server with the smaller id, or the newer one when the same server dialed both.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { decodePublicKey, keyPolicy, parseAcceptableKey, sameKeyMaterial } from "../protocol/keys.ts";
import { bucket } from "./limits.ts";
import { keyFingerprint } from "../protocol/user_id.ts";
import type { Out } from "./out.ts";
import { flushOutbox, outboxHanded } from "./offline.ts";
import { advertFor, toLocalUsers } from "./presence.ts";
import { presenceTsExpiry, sweepBy } from "./state.ts";
import type { Conn, DialIntent, ServerRecord, State } from "./types.ts";

/** Reconnect and re-join delays: the first, and the most they grow to. */
export const FIRST_BACKOFF_MS = 1_000;
export const MAX_BACKOFF_MS = 60_000;

/** Our key in the form this peer reads (base64url(PEM text) for PEM-dialect peers, else DER SPKI). */
export function ourKeyFor(state: State, conn?: Conn): string {
  return conn?.pemDialect ? state.config.serverPubPem : state.config.serverPub;
}

export function isPemDialect(key: string): boolean {
  const d = decodePublicKey(key);
  return d.ok && d.key.form === "b64-pem";
}

/** Whether this network admits a server key (`allowedServerKeys`, PROFILE §12). */
export function allowedServerKey(state: State, key: string): boolean {
  const list = state.config.federation.allowedServerKeys;
  return list.length === 0 || list.some((k) => sameKeyMaterial(k, key));
}

/**
 * Ask the shell to dial: the endpoint (`wss` and a path when the server was reached through a bootstrap URL,
 * PROFILE §15), when, and how long to wait for the connection before giving up (`dialTimeoutMs`).
 */
export function newDial(out: Out, intent: Omit<DialIntent, "token">, afterMs: number): void {
  const { state } = out;
  const token = state.nextToken++;
  state.dials.set(token, { ...intent, token });
  out.effects.push({
    kind: "dial",
    token,
    host: intent.host,
    port: intent.port,
    scheme: intent.tls ? "wss" : "ws",
    path: intent.path ?? "",
    afterMs,
    timeoutMs: state.config.federation.dialTimeoutMs,
  });
}

/** The http(s) origin of a server (for /.well-known/socp). */
function httpUrl(t: { host: string; port: number; tls?: boolean }): string {
  return `${t.tls ? "https" : "http"}://${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;
}

/** PROFILE §15: only servers that say they run `socp/…` get the outbox ACK extension. */
export function ackMode(state: State, serverId: string): "yes" | "no" | "unknown" {
  const sw = state.peerSoftware.get(serverId);
  if (sw === undefined) return "unknown";
  return /^socp(-deno)?\//i.test(sw) ? "yes" : "no";
}

/** A dial we asked for connected: say who we are. */
export function dialConnected(out: Out, conn: Conn, intent: DialIntent): void {
  const { state } = out;
  conn.dial = intent;
  conn.pemDialect = isPemDialect(intent.expectKey);
  if (intent.purpose === "link" && intent.serverId && state.links.has(intent.serverId)) {
    out.close(conn.id, 1000, "already linked");
    return;
  }
  const payload = { host: state.advertise.host, port: state.advertise.port, pubkey: ourKeyFor(state, conn) };
  if (intent.purpose === "join") {
    out.send(conn.id, out.frame("SERVER_HELLO_JOIN", `${intent.host}:${intent.port}`, payload));
  } else if (intent.serverId) {
    // PROFILE §15 re-linking: some servers accept only SERVER_HELLO_JOIN as a server's first frame. The link is
    // up only once the peer's first (verified) frame arrives, so an instant close never resets the backoff.
    intent.hello = state.helloKind.get(intent.serverId) ?? "link";
    if (intent.hello === "join") {
      out.send(conn.id, out.frame("SERVER_HELLO_JOIN", `${intent.host}:${intent.port}`, payload));
    } else if (intent.hello === "announce") {
      // A dial-back introducer registers peers only from JOIN or ANNOUNCE and ignores LINK (PROFILE §15).
      out.send(conn.id, out.frame("SERVER_ANNOUNCE", intent.serverId, payload));
    } else {
      out.send(conn.id, out.frame("SERVER_HELLO_LINK", intent.serverId, payload));
    }
  }
  out.log("debug", "dial.connected", {
    purpose: intent.purpose,
    host: intent.host,
    port: intent.port,
    hello: intent.hello ?? "join",
  });
}

/** The first verified frame on a link we dialed: now the link is up (PROFILE §15). */
export function dialedLinkUp(out: Out, conn: Conn): boolean {
  const intent = conn.dial!;
  if (intent.hello) out.state.helloKind.set(intent.serverId!, intent.hello);
  return linkUp(out, conn, intent.serverId!, out.state.config.serverId);
}

/**
 * A link dial failed (refused, timed out, or closed before it was a link). `answered` is set when the connection
 * was open and our hello went out, but the peer closed or answered ERROR before any frame of its own: it refused
 * our hello, so the next dial opens with the other one (LINK, then JOIN; PROFILE §15).
 */
export function linkDialFailed(out: Out, intent: DialIntent, reason: string, answered: boolean): void {
  const { state } = out;
  if (!intent.serverId) return;
  if (answered && intent.hello) {
    const next = intent.hello === "join" ? "link" : "join";
    state.helloKind.set(intent.serverId, next);
    out.log("info", "link.refused", { server: intent.serverId, hello: intent.hello, next, reason });
  }
  if (!state.links.has(intent.serverId)) scheduleRedial(out, intent.serverId);
}

/** Dial a pinned server again after its backoff (one pending dial per server). */
export function scheduleRedial(out: Out, serverId: string): void {
  const { state } = out;
  const rec = state.servers.get(serverId);
  if (!rec || rec.port <= 0 || serverId === state.config.serverId) return;
  // PROFILE §16: only addresses a verified frame vouched for are dialed; a server that dialed us redials us.
  if (rec.claimed || rec.noDial) return;
  if ([...state.dials.values()].some((d) => d.serverId === serverId)) return; // one pending dial per server
  const wait = state.backoff.get(serverId) ?? FIRST_BACKOFF_MS;
  state.backoff.set(serverId, Math.min(wait * 2, MAX_BACKOFF_MS));
  // A server first reached through a bootstrap URL keeps its path and scheme (PROFILE §15).
  const boot = rec.path === undefined && rec.tls === undefined
    ? state.config.federation.bootstrap.find((b) =>
      b.host === rec.host && b.port === rec.port && sameKeyMaterial(b.pubkey, rec.pubkey)
    )
    : undefined;
  newDial(out, {
    purpose: "link",
    host: rec.host,
    port: rec.port,
    path: rec.path ?? boot?.path,
    tls: rec.tls ?? boot?.tls,
    expectKey: rec.pubkey,
    serverId,
  }, wait);
}

/**
 * Pin a server's key to its id (a new or changed row is persisted, unless the pin is still `claimed` or
 * `unlinked`, PROFILE §16). An existing pin keeps its standing: a weaker source never demotes it.
 */
export function pin(out: Out, rec: ServerRecord): void {
  const old = out.state.servers.get(rec.serverId);
  if (old) {
    const merged: ServerRecord = { ...old, host: rec.host, port: rec.port };
    if (rec.path !== undefined) merged.path = rec.path;
    if (rec.tls !== undefined) merged.tls = rec.tls;
    // Standing only grows: a proven pin stays proven, a dialable one dialable.
    if (!rec.claimed) delete merged.claimed;
    if (!rec.unlinked) delete merged.unlinked;
    if (!rec.noDial) delete merged.noDial;
    const same = old.host === merged.host && old.port === merged.port && old.claimed === merged.claimed &&
      old.unlinked === merged.unlinked && old.noDial === merged.noDial;
    out.state.servers.set(rec.serverId, merged);
    if (!same && !merged.claimed && !merged.unlinked) out.persist({ op: "pinServer", server: merged });
    return;
  }
  out.state.servers.set(rec.serverId, rec);
  if (!rec.claimed && !rec.unlinked) out.persist({ op: "pinServer", server: rec });
}

/**
 * A verified frame from `serverId` on its link: a pin that rested on an unsigned JOIN, or came from a list and
 * never linked, becomes a real (persisted) pin (PROFILE §16).
 */
export function confirmPin(out: Out, serverId: string): void {
  const rec = out.state.servers.get(serverId);
  if (!rec || (!rec.claimed && !rec.unlinked)) return;
  const { claimed: _c, unlinked: _u, ...proven } = rec;
  out.state.servers.set(serverId, proven);
  out.persist({ op: "pinServer", server: proven });
  out.log("info", "server.pinned", { server: serverId, note: "verified frame on its link" });
}

/**
 * Make `conn` the link to `serverId`. Returns false when an existing link wins the duplicate tie-break (the new
 * connection is then closed).
 */
export function linkUp(out: Out, conn: Conn, serverId: string, dialerId: string): boolean {
  const { state } = out;
  const existing = state.links.get(serverId);
  if (existing !== undefined && existing !== conn.id && state.conns.has(existing)) {
    const oldDialer = state.linkDialer.get(existing) ?? "";
    const keepOld = oldDialer !== dialerId && oldDialer < dialerId;
    if (keepOld) {
      out.close(conn.id, 1000, "duplicate link");
      return false;
    }
    state.linkDialer.delete(existing);
    out.close(existing, 1000, "replaced by a newer link");
  }
  conn.role = "server";
  conn.serverId = serverId;
  conn.peerHeartbeats = false;
  conn.tokens = bucket(conn, state.config.limits).burst; // a new link starts with a server link's full burst
  state.links.set(serverId, conn.id);
  state.linkDialer.set(conn.id, dialerId);
  state.backoff.delete(serverId);
  for (const [t, d] of state.dials) {
    if (d.serverId === serverId && d.purpose === "link") state.dials.delete(t);
  }
  // PROFILE §12: on a new link each side advertises its local users. Fresh adverts (new ts), so a server that
  // saw the old ones before a link flap does not drop them as duplicates; the signature is cached per payload.
  for (const userId of state.localUsers.keys()) {
    const user = state.users.get(userId);
    if (!user) continue;
    const advert = advertFor(out, user);
    state.presence.set(userId, { userId, serverId: state.config.serverId, advert });
    out.send(conn.id, advert, true);
  }
  flushOutbox(out, conn.id, serverId, ackMode(state, serverId));
  // Does it speak the outbox ACK extension? Ask its /.well-known/socp once (PROFILE §15).
  if (!state.peerSoftware.has(serverId)) {
    const rec = state.servers.get(serverId);
    if (rec && rec.port > 0) {
      out.effects.push({ kind: "probe", serverId, url: `${httpUrl(rec)}/.well-known/socp` });
    }
  }
  out.log("info", "link.up", {
    server: serverId,
    conn: conn.id,
    dialer: dialerId === state.config.serverId ? "us" : "them",
  });
  return true;
}

/** A link is gone (closed or silent too long): withdraw its users, redial. */
export function linkDown(out: Out, conn: Conn, reason: string): void {
  const { state } = out;
  const serverId = conn.serverId;
  state.linkDialer.delete(conn.id);
  if (!serverId || state.links.get(serverId) !== conn.id) return;
  state.links.delete(serverId);
  let withdrawn = 0;
  for (const p of [...state.presence.values()]) {
    if (p.serverId !== serverId) continue;
    state.presence.delete(p.userId);
    const ts = state.presenceTs.get(p.userId);
    if (ts !== undefined) sweepBy(state, presenceTsExpiry(state, ts)); // not online anywhere now
    withdrawn++;
    toLocalUsers(out, out.frame("USER_REMOVE", "*", { user_id: p.userId, server_id: serverId }), true);
  }
  out.log("info", "link.down", { server: serverId, reason, users_withdrawn: withdrawn });
  if (state.servers.get(serverId)?.claimed) {
    state.servers.delete(serverId); // never proven: the pin goes with its link
    return;
  }
  scheduleRedial(out, serverId);
}

/** A joining or linking server's key: acceptable and admitted here, or BAD_KEY and the connection closed. */
export function checkServerKey(out: Out, conn: Conn, key: string, to: string): boolean {
  const ok = parseAcceptableKey(key, keyPolicy(out.state.config.labWeakKeys));
  if (!ok.ok) {
    out.error(conn.id, to, "BAD_KEY", `server key: ${ok.reason}`);
    out.close(conn.id, 1008, "bad server key");
    return false;
  }
  if (!allowedServerKey(out.state, key)) {
    out.error(conn.id, to, "BAD_KEY", "this network admits only listed server keys");
    out.close(conn.id, 1008, "server key not allowed");
    return false;
  }
  return true;
}

/** SERVER_HELLO_LINK or SERVER_ANNOUNCE as the first frame of an inbound server connection. */
export function onLinkHello(
  out: Out,
  conn: Conn,
  env: Envelope<"SERVER_HELLO_LINK" | "SERVER_ANNOUNCE">,
): void {
  const { state } = out;
  const p = env.payload;
  if (!isServerId(env.from) || env.from === state.config.serverId) {
    out.error(conn.id, env.from, "BAD_KEY", "unusable server id");
    return out.close(conn.id, 1008, "bad server id");
  }
  if (p.host === undefined || p.port === undefined || p.pubkey === undefined) {
    out.error(
      conn.id,
      env.from,
      "UNKNOWN_TYPE",
      `${env.type} opens a link only with host, port and pubkey; send SERVER_HELLO_JOIN or SERVER_HELLO_LINK`,
    );
    return out.close(conn.id, 1008, "server hello without an address");
  }
  // PROFILE §16: a server at a bootstrap entry's address must hold that entry's key (the operator pinned it).
  const entry = state.config.federation.bootstrap.find((b) => b.host === p.host && b.port === p.port);
  if (entry && !sameKeyMaterial(entry.pubkey, p.pubkey)) {
    out.error(conn.id, env.from, "BAD_KEY", `${p.host}:${p.port} is pinned to another key here`);
    out.log("warn", "link.refused", {
      server: env.from,
      reason: "the address is a bootstrap entry whose key differs",
      expected: keyFingerprint(entry.pubkey),
      presented: keyFingerprint(p.pubkey),
    });
    return out.close(conn.id, 1008, "key differs from the bootstrap entry");
  }
  const pinned = state.servers.get(env.from);
  if (pinned && !sameKeyMaterial(pinned.pubkey, p.pubkey)) {
    out.error(conn.id, env.from, "BAD_KEY", `server ${env.from} is pinned to another key`);
    out.log("warn", "link.refused", { server: env.from, reason: "key differs from the pinned key" });
    return out.close(conn.id, 1008, "key differs from the pinned key");
  }
  if (!checkServerKey(out, conn, p.pubkey, env.from)) return;
  conn.pemDialect = isPemDialect(p.pubkey);
  // The hello is signed (its row says "always"): the key proven, the address vouched for by its owner.
  pin(out, { serverId: env.from, host: p.host, port: p.port, pubkey: pinned?.pubkey ?? p.pubkey });
  // The dialer counts its link as up at our first frame (PROFILE §15): answer at once.
  if (linkUp(out, conn, env.from, env.from)) out.send(conn.id, out.frame("HEARTBEAT", env.from, {}));
}

/** Heartbeats and liveness for every link (called on each tick). */
export function linkTimers(out: Out): void {
  const { state, now } = out;
  const { heartbeatMs, linkTimeoutMs } = state.config.federation;
  for (const [serverId, connId] of [...state.links]) {
    const c = state.conns.get(connId);
    if (!c) continue;
    // PROFILE §15 liveness: a server that keeps links alive only with WebSocket pings sends no frames when idle;
    // the shell cannot see its pongs, so silence closes only the links of servers that heartbeat with frames.
    // (Inbound links are also pinged by the WebSocket layer, which closes them when a pong is missing.)
    if (c.peerHeartbeats && now - c.lastSeen > linkTimeoutMs) {
      out.close(connId, 1001, `no frame for ${Math.round((now - c.lastSeen) / 1000)} s`);
      linkDown(out, c, "timeout");
      continue;
    }
    if (now - c.lastSent >= heartbeatMs) out.send(connId, out.frame("HEARTBEAT", serverId, {}));
  }
  for (const c of state.conns.values()) {
    // A link we dialed waits for the peer's first frame; keep it alive for peers that judge silence.
    if (
      c.role === "pending" && c.dial?.purpose === "link" && c.dial.serverId && now - c.lastSent >= heartbeatMs
    ) {
      out.send(c.id, out.frame("HEARTBEAT", c.dial.serverId, {}));
    }
  }
}

/**
 * When {@linkcode linkTimers} next has something to do: a link's heartbeat is due (`heartbeatMs` after we last
 * sent on it), a heartbeating link has been silent for longer than `linkTimeoutMs`, or a link we dialed still
 * waits for its peer's first frame and needs a heartbeat. Infinity when there is no link.
 */
export function linkDeadline(state: State): number {
  const { heartbeatMs, linkTimeoutMs } = state.config.federation;
  let first = Infinity;
  for (const connId of state.links.values()) {
    const c = state.conns.get(connId);
    if (!c) continue;
    if (c.peerHeartbeats) first = Math.min(first, c.lastSeen + linkTimeoutMs + 1);
    first = Math.min(first, c.lastSent + heartbeatMs);
  }
  for (const c of state.conns.values()) {
    if (c.role === "pending" && c.dial?.purpose === "link" && c.dial.serverId) {
      first = Math.min(first, c.lastSent + heartbeatMs);
    }
  }
  return first;
}

/** The answer to a probe of /.well-known/socp (or "" when there was none). */
export function onSoftware(out: Out, serverId: string, software: string, tls = false): void {
  const { state } = out;
  state.peerSoftware.set(serverId, software);
  const rec = state.servers.get(serverId);
  if (tls && rec && !rec.tls) state.servers.set(serverId, { ...rec, tls: true }); // in memory: redial with wss
  out.log("debug", "server.software", { server: serverId, software, ack: ackMode(state, serverId), tls });
  // Outbox frames already went to this live link with `ack` (sent before we knew): it will not ACK them, and
  // handing them over was delivery. Nothing is resent.
  if (ackMode(state, serverId) === "no" && state.links.has(serverId)) outboxHanded(out, serverId);
}
