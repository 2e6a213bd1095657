/**
 * Federation (SOCP §8, PROFILE §3, §7, §12): joining through an introducer, answering joins, server links with
 * pinned keys, presence gossip, heartbeats and liveness, reconnects with backoff.
 *
 * Links: either side may dial. When two live links to one server exist (both sides dialed at once), both ends keep
 * the link dialed by the server with the smaller id, or the newer one when the same server dialed both.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { decodePublicKey, parseAcceptableKey, sameKeyMaterial } from "../protocol/keys.ts";
import { SOFTWARE } from "../version.ts";
import { bucket } from "./limits.ts";
import type { Out } from "./out.ts";
import { flushOutbox, outboxHanded, setHome } from "./offline.ts";
import { advertFor, toLocalUsers } from "./presence.ts";
import type { Conn, DialIntent, ServerRecord, State } from "./types.ts";

const MAX_BACKOFF_MS = 60_000;
const FIRST_BACKOFF_MS = 1_000;

function keyPolicy(state: State) {
  return { allowedBits: state.config.labWeakKeys ? [1024, 2048, 3072, 4096] : [4096] };
}

/** Our key in the form this peer reads (base64url(PEM text) for PEM-dialect peers, else DER SPKI). */
export function ourKeyFor(state: State, conn?: Conn): string {
  return conn?.pemDialect ? state.config.serverPubPem : state.config.serverPub;
}

function isPemDialect(key: string): boolean {
  const d = decodePublicKey(key);
  return d.ok && d.key.form === "b64-pem";
}

function allowed(state: State, key: string): boolean {
  const list = state.config.federation.allowedServerKeys;
  return list.length === 0 || list.some((k) => sameKeyMaterial(k, key));
}

/** The URL of a server endpoint (`wss://` and a path when its bootstrap entry was a URL, PROFILE §15). */
export function endpointUrl(
  t: { host: string; port: number; path?: string; tls?: boolean },
  scheme?: "http",
): string {
  const host = t.host.includes(":") ? `[${t.host}]` : t.host;
  const proto = scheme === "http" ? (t.tls ? "https" : "http") : (t.tls ? "wss" : "ws");
  return `${proto}://${host}:${t.port}${scheme === "http" ? "" : t.path ?? ""}`;
}

function newDial(out: Out, intent: Omit<DialIntent, "token">, afterMs: number): void {
  const token = out.state.nextToken++;
  const full = { ...intent, token };
  out.state.dials.set(token, full);
  out.effects.push({ kind: "dial", token, url: endpointUrl(intent), afterMs });
}

/** PROFILE §15: only servers that say they run `socp/…` get the outbox ACK extension. */
export function ackMode(state: State, serverId: string): "yes" | "no" | "unknown" {
  const sw = state.peerSoftware.get(serverId);
  if (sw === undefined) return "unknown";
  return /^socp(-deno)?\//i.test(sw) ? "yes" : "no";
}

/** The listening address is known: join the network, or start one. */
export function started(out: Out, host: string, port: number): void {
  const { state } = out;
  state.advertise = { host, port };
  // After a restart, reconnect to every server pinned before (the bootstrap entries are joined instead).
  for (const rec of state.servers.values()) {
    if (!isBootstrapKey(state, rec.pubkey)) scheduleRedial(out, rec.serverId);
  }
  if (state.config.federation.introducer || state.config.federation.bootstrap.length === 0) {
    state.join.phase = "alone";
    ensureChannel(out);
    out.log("info", "network.introducer", {
      reason: state.config.federation.introducer ? "--introducer" : "no bootstrap list",
    });
    return;
  }
  tryBootstrap(out, 0, 0);
}

/** The first server of a network creates the channel key (PROFILE §8). */
function ensureChannel(out: Out): void {
  if (out.state.channel || out.state.channelPending) return;
  out.state.channelPending = true;
  out.effects.push({ kind: "createChannel" });
}

function isBootstrapKey(state: State, key: string): boolean {
  return state.config.federation.bootstrap.some((b) => sameKeyMaterial(b.pubkey, key));
}

/** Dial bootstrap entry `index` (skipping ourselves); after the last one, start alone and retry later. */
function tryBootstrap(out: Out, index: number, afterMs: number): void {
  const { state } = out;
  const list = state.config.federation.bootstrap;
  while (index < list.length && sameKeyMaterial(list[index].pubkey, state.config.serverPub)) index++;
  if (index >= list.length) {
    if (state.join.phase !== "alone") {
      out.log("warn", "network.no_introducer", {
        note: "no bootstrap entry answered; serving as introducer",
        retry_ms: state.join.retryMs,
      });
    }
    state.join.phase = "alone";
    ensureChannel(out);
    // Introducers we were linked to before are ordinary link targets now.
    for (const rec of state.servers.values()) {
      if (isBootstrapKey(state, rec.pubkey) && !state.links.has(rec.serverId)) {
        scheduleRedial(out, rec.serverId);
      }
    }
    if (state.links.size === 0) {
      const wait = state.join.retryMs;
      state.join.retryMs = Math.min(wait * 2, MAX_BACKOFF_MS);
      state.join.phase = "joining";
      const e = list.find((b) => !sameKeyMaterial(b.pubkey, state.config.serverPub));
      if (e) {
        newDial(out, {
          purpose: "join",
          host: e.host,
          port: e.port,
          path: e.path,
          tls: e.tls,
          expectKey: e.pubkey,
          bootstrapIndex: list.indexOf(e),
        }, wait);
      }
    }
    return;
  }
  state.join.phase = "joining";
  const e = list[index];
  newDial(
    out,
    {
      purpose: "join",
      host: e.host,
      port: e.port,
      path: e.path,
      tls: e.tls,
      expectKey: e.pubkey,
      bootstrapIndex: index,
    },
    afterMs,
  );
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
 * A dial failed (refused, timed out, or closed before it was a link). `answered` is set when the connection was
 * open and our hello went out, but the peer closed or answered ERROR before any frame of its own: it refused
 * our hello, so the next dial opens with the other one (LINK, then JOIN; PROFILE §15).
 */
export function dialFailed(out: Out, intent: DialIntent, reason: string, answered = false): void {
  const { state } = out;
  if (intent.purpose === "join") {
    out.log("info", "join.failed", { host: intent.host, port: intent.port, reason });
    if (state.join.phase === "joining") tryBootstrap(out, (intent.bootstrapIndex ?? 0) + 1, 0);
    return;
  }
  if (!intent.serverId) return;
  if (answered && intent.hello) {
    const next = intent.hello === "link" ? "join" : "link";
    state.helloKind.set(intent.serverId, next);
    out.log("info", "link.refused", { server: intent.serverId, hello: intent.hello, next, reason });
  }
  if (!state.links.has(intent.serverId)) scheduleRedial(out, intent.serverId);
}

function scheduleRedial(out: Out, serverId: string): void {
  const { state } = out;
  const rec = state.servers.get(serverId);
  if (!rec || rec.port <= 0 || serverId === state.config.serverId) return;
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

function pin(out: Out, rec: ServerRecord): void {
  const old = out.state.servers.get(rec.serverId);
  if (old && old.pubkey === rec.pubkey && old.host === rec.host && old.port === rec.port) {
    if (rec.path !== undefined || rec.tls !== undefined) {
      out.state.servers.set(rec.serverId, { ...old, ...rec });
    }
    return;
  }
  out.state.servers.set(rec.serverId, rec);
  out.persist({ op: "pinServer", server: rec });
}

/**
 * Make `conn` the link to `serverId`. Returns false when an existing link wins the duplicate tie-break (the new
 * connection is then closed).
 */
function linkUp(out: Out, conn: Conn, serverId: string, dialerId: string): boolean {
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
      out.effects.push({ kind: "probe", serverId, url: `${endpointUrl(rec, "http")}/.well-known/socp` });
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
    withdrawn++;
    toLocalUsers(out, out.frame("USER_REMOVE", "*", { user_id: p.userId, server_id: serverId }), true);
  }
  out.log("info", "link.down", { server: serverId, reason, users_withdrawn: withdrawn });
  scheduleRedial(out, serverId);
}

function checkServerKey(out: Out, conn: Conn, key: string, to: string): boolean {
  const ok = parseAcceptableKey(key, keyPolicy(out.state));
  if (!ok.ok) {
    out.error(conn.id, to, "BAD_KEY", `server key: ${ok.reason}`);
    out.close(conn.id, 1008, "bad server key");
    return false;
  }
  if (!allowed(out.state, key)) {
    out.error(conn.id, to, "BAD_KEY", "this network admits only listed server keys");
    out.close(conn.id, 1008, "server key not allowed");
    return false;
  }
  return true;
}

function serverEntries(state: State): { server_id: string; host: string; port: number; pubkey: string }[] {
  const self = {
    server_id: state.config.serverId,
    host: state.advertise.host,
    port: state.advertise.port,
    pubkey: state.config.serverPub,
  };
  const others = [...state.links.keys()].flatMap((id) => {
    const r = state.servers.get(id);
    return r ? [{ server_id: id, host: r.host, port: r.port, pubkey: r.pubkey }] : [];
  });
  return [self, ...others];
}

/** SERVER_HELLO_JOIN on a fresh inbound connection: admit the server and welcome it (PROFILE §12). */
export function onJoin(
  out: Out,
  conn: Conn,
  env: Envelope<"SERVER_HELLO_JOIN">,
  fresh: string | undefined,
): void {
  const { state } = out;
  const p = env.payload;
  if (!checkServerKey(out, conn, p.pubkey, env.from)) return;
  const requested = env.from;
  const pinned = state.servers.get(requested);
  const taken = !isServerId(requested) || requested === state.config.serverId ||
    (pinned !== undefined && !sameKeyMaterial(pinned.pubkey, p.pubkey));
  const assigned = taken ? (fresh ?? `${requested}-1`) : requested;
  conn.pemDialect = isPemDialect(p.pubkey);
  pin(out, { serverId: assigned, host: p.host, port: p.port, pubkey: p.pubkey });
  const welcome = out.frame("SERVER_WELCOME", assigned, {
    assigned_id: assigned,
    servers: serverEntries(state).map((s) =>
      s.server_id === state.config.serverId ? { ...s, pubkey: ourKeyFor(state, conn) } : s
    ),
    clients: [...state.presence.values()].map((u) => {
      const home = u.serverId === state.config.serverId ? state.advertise : state.servers.get(u.serverId);
      return {
        user_id: u.userId,
        host: home?.host ?? "",
        port: home?.port ?? 0,
        pubkey: u.advert.payload.pubkey ?? "",
      };
    }),
    server_pub: ourKeyFor(state, conn),
    // PROFILE §15: joiners that read the introducer's key from `pubkey` and its address from `host`/`port`.
    pubkey: ourKeyFor(state, conn),
    host: state.advertise.host,
    port: state.advertise.port,
    software: SOFTWARE,
  });
  // PROFILE §8: the channel's private key travels to the joiner wrapped under the joiner's key (the shell seals).
  if (state.channel) {
    welcome.payload.public_channel = {
      version: state.channel.version,
      creator_pub: state.channel.creatorPub,
      wrapped_key: "",
    };
    out.send(conn.id, welcome, true, { kind: "welcome", forKey: p.pubkey });
  } else {
    out.send(conn.id, welcome);
  }
  out.log("info", "server.joined", {
    server: assigned,
    requested,
    host: p.host,
    port: p.port,
    reassigned: taken,
  });
  linkUp(out, conn, assigned, assigned);
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
  const pinned = state.servers.get(env.from);
  if (pinned && !sameKeyMaterial(pinned.pubkey, p.pubkey)) {
    out.error(conn.id, env.from, "BAD_KEY", `server ${env.from} is pinned to another key`);
    out.log("warn", "link.refused", { server: env.from, reason: "key differs from the pinned key" });
    return out.close(conn.id, 1008, "key differs from the pinned key");
  }
  if (!checkServerKey(out, conn, p.pubkey, env.from)) return;
  conn.pemDialect = isPemDialect(p.pubkey);
  pin(out, { serverId: env.from, host: p.host, port: p.port, pubkey: pinned?.pubkey ?? p.pubkey });
  // The dialer counts its link as up at our first frame (PROFILE §15): answer at once.
  if (linkUp(out, conn, env.from, env.from)) out.send(conn.id, out.frame("HEARTBEAT", env.from, {}));
}

/**
 * SERVER_WELCOME on our join connection: adopt the id, link to everyone, announce ourselves. The deployed variants
 * of PROFILE §15 are read too; the welcome itself was verified with the bootstrap entry's key (the shell and the
 * reducer's signature check), and whatever key it names must be that key.
 */
export function onWelcome(out: Out, conn: Conn, env: Envelope<"SERVER_WELCOME">): void {
  const { state } = out;
  const intent = conn.dial!;
  const p = env.payload;
  for (const key of [p.server_pub, p.pubkey]) {
    if (key !== undefined && !sameKeyMaterial(key, intent.expectKey)) {
      out.log("warn", "join.refused", { reason: "the welcome names a key other than the bootstrap key" });
      return out.close(conn.id, 1008, "introducer key mismatch");
    }
  }
  const assigned = p.assigned_id ?? state.config.serverId; // absent or null: keep our own id
  // The introducer's id: `payload.server_id` when it names itself there, else `from`.
  const intro = p.server_id !== undefined && isServerId(p.server_id) ? p.server_id : env.from;
  if (!isServerId(assigned) || !isServerId(intro) || intro === state.config.serverId) {
    out.log("warn", "join.refused", { reason: "unusable ids in SERVER_WELCOME" });
    return out.close(conn.id, 1008, "bad welcome");
  }
  if (assigned !== state.config.serverId) adoptId(out, assigned);
  const pc = p.public_channel;
  if (pc && (!state.channel || state.channel.creatorPub !== pc.creator_pub)) {
    state.channelPending = true;
    out.effects.push({
      kind: "adoptChannel",
      version: pc.version,
      creatorPub: pc.creator_pub,
      wrappedKey: pc.wrapped_key,
    });
  } else if (pc && state.channel) {
    state.channel.version = Math.max(state.channel.version, pc.version);
  }
  state.join = { phase: "joined", retryMs: FIRST_BACKOFF_MS };
  pin(out, {
    serverId: intro,
    host: intent.host,
    port: intent.port,
    pubkey: intent.expectKey,
    path: intent.path,
    tls: intent.tls,
  });
  if (p.software !== undefined) state.peerSoftware.set(intro, p.software);
  if (!linkUp(out, conn, intro, state.config.serverId)) return;
  out.log("info", "network.joined", {
    introducer: intro,
    server_id: state.config.serverId,
    servers: p.servers?.length ?? 0,
  });
  userLocations(out, intro, p.snapshot?.user_locations);
  // Deployed introducers send one list or the other (SOCP-1.3 §5.2): without `servers`, read `clients` entries
  // that carry an address as servers (the "mis-labelled server list" reading).
  const listed = p.servers ??
    (p.clients ?? []).flatMap((c) =>
      c.host && c.port ? [{ server_id: c.user_id, host: c.host, port: c.port, pubkey: c.pubkey }] : []
    );
  for (const s of listed) {
    if (s.server_id === state.config.serverId || s.server_id === intro || state.links.has(s.server_id)) {
      continue;
    }
    const known = state.servers.get(s.server_id);
    if (known && !sameKeyMaterial(known.pubkey, s.pubkey)) {
      out.log("warn", "link.skipped", { server: s.server_id, reason: "key differs from the pinned key" });
      continue;
    }
    if (!parseAcceptableKey(s.pubkey, keyPolicy(state)).ok) continue;
    pin(out, { serverId: s.server_id, host: s.host, port: s.port, pubkey: known?.pubkey ?? s.pubkey });
    newDial(
      out,
      { purpose: "link", host: s.host, port: s.port, expectKey: s.pubkey, serverId: s.server_id },
      0,
    );
  }
  for (const c of state.links.values()) {
    const pubkey = ourKeyFor(state, state.conns.get(c));
    out.send(
      c,
      out.frame("SERVER_ANNOUNCE", "*", { host: state.advertise.host, port: state.advertise.port, pubkey }),
    );
  }
}

/**
 * SERVER_WELCOME answering the SERVER_HELLO_JOIN we re-linked with (a server that accepts only JOIN, PROFILE §15):
 * the link is up (the caller did that); we keep our id whatever it assigns, since the network already knows it.
 */
export function onRelinkWelcome(out: Out, conn: Conn, env: Envelope<"SERVER_WELCOME">): void {
  const p = env.payload;
  if (p.software !== undefined && conn.serverId) out.state.peerSoftware.set(conn.serverId, p.software);
  if (p.assigned_id && p.assigned_id !== out.state.config.serverId) {
    out.log("info", "relink.welcome", { server: conn.serverId ?? "", assigned_ignored: p.assigned_id });
  }
  if (conn.serverId) userLocations(out, conn.serverId, p.snapshot?.user_locations);
}

/**
 * `user_locations` `{user_id: server_id}` (a welcome's snapshot, or an address-less SERVER_ANNOUNCE; PROFILE §15):
 * presence information. A server speaks only for its own users, so only the entries placing a user at `serverId`
 * are kept, as that user's last known home (where a DM to them goes).
 */
export function userLocations(out: Out, serverId: string, locations: unknown): void {
  if (locations === null || typeof locations !== "object" || Array.isArray(locations)) return;
  let n = 0;
  for (const [userId, where] of Object.entries(locations as Record<string, unknown>)) {
    if (++n > 100_000) break;
    if (where !== serverId || !isServerId(userId) || out.state.localUsers.has(userId)) continue;
    setHome(out, userId, serverId);
  }
}

function adoptId(out: Out, id: string): void {
  const { state } = out;
  const old = state.config.serverId;
  state.config.serverId = id;
  out.persist({ op: "setServerId", serverId: id });
  for (const userId of state.localUsers.keys()) {
    const user = state.users.get(userId);
    if (user) state.presence.set(userId, { userId, serverId: id, advert: advertFor(out, user) });
  }
  out.log("info", "server_id.assigned", { old, new: id });
}

/** SERVER_ANNOUNCE on an established link: pin the newcomer (trust on introduction), relay, and link to it. */
export function onAnnounce(out: Out, conn: Conn, env: Envelope<"SERVER_ANNOUNCE">): void {
  const { state } = out;
  const p = env.payload;
  if (env.from === state.config.serverId || !isServerId(env.from)) return;
  if (p.user_locations !== undefined && env.from === conn.serverId) {
    userLocations(out, env.from, p.user_locations);
  }
  if (p.host === undefined || p.port === undefined || p.pubkey === undefined) {
    // PROFILE §15: `{server_id, user_locations}` without an address is presence information only.
    out.log("debug", "announce.no_address", { server: env.from });
    return;
  }
  const pinned = state.servers.get(env.from);
  if (pinned && !sameKeyMaterial(pinned.pubkey, p.pubkey)) {
    out.log("warn", "announce.refused", { server: env.from, reason: "key differs from the pinned key" });
    return;
  }
  if (!parseAcceptableKey(p.pubkey, keyPolicy(state)).ok || !allowed(state, p.pubkey)) return;
  pin(out, { serverId: env.from, host: p.host, port: p.port, pubkey: pinned?.pubkey ?? p.pubkey });
  relayToServers(out, env, conn.serverId);
  if (!state.links.has(env.from) && ![...state.dials.values()].some((d) => d.serverId === env.from)) {
    // The newcomer dials the servers its welcome listed; give it a head start before dialing it ourselves.
    const wait = Math.min(3000, state.config.federation.linkTimeoutMs);
    newDial(out, {
      purpose: "link",
      host: p.host,
      port: p.port,
      expectKey: pinned?.pubkey ?? p.pubkey,
      serverId: env.from,
    }, wait);
  }
}

/** Send a frame unchanged (its original `sig`) to every linked server except `except` and the frame's origin. */
export function relayToServers(out: Out, env: Envelope, except?: string): void {
  for (const [serverId, c] of out.state.links) {
    if (serverId !== except && serverId !== env.from) out.send(c, env, false);
  }
}

/** PROFILE §3: a server speaks only for its own users (`payload.server_id == from`); refuse anything else. */
function speaksForItself(out: Out, conn: Conn, env: Envelope<"USER_ADVERTISE" | "USER_REMOVE">): boolean {
  if (env.payload.server_id === env.from) return true;
  // Signed under another name (PROFILE §15): `from` was that name; the payload may still use it.
  if (out.alias !== undefined && env.payload.server_id === out.alias) return true;
  out.error(
    conn.id,
    conn.serverId ?? "",
    "INVALID_SIG",
    `${env.type}: payload.server_id must equal from`,
    true,
  );
  return false;
}

/** USER_ADVERTISE from another server (PROFILE §3, §6). */
export function onRemoteAdvert(out: Out, conn: Conn, env: Envelope<"USER_ADVERTISE">): void {
  const { state } = out;
  const p = env.payload;
  if (!speaksForItself(out, conn, env)) return;
  if (env.from === state.config.serverId) return;
  // Only users we could deliver to: their server must be linked to us now. A relayed advert for a server we
  // have no link to (it may just have died, with this advert still in flight via a third server) would leave a
  // user "online" that no link loss can ever remove; the server re-advertises its users when a link comes up.
  if (!state.links.has(env.from)) {
    out.log("debug", "advert.unlinked", { user: p.user_id, server: env.from });
    return;
  }
  if (state.localUsers.has(p.user_id)) {
    out.log("warn", "advert.conflict", { user: p.user_id, server: env.from, note: "user is online here" });
    return;
  }
  if (env.ts < (state.presenceTs.get(p.user_id) ?? -Infinity)) {
    out.log("debug", "advert.stale", { user: p.user_id, server: env.from });
    return;
  }
  state.presenceTs.set(p.user_id, env.ts);
  setHome(out, p.user_id, env.from);
  const had = state.presence.get(p.user_id);
  state.presence.set(p.user_id, { userId: p.user_id, serverId: env.from, advert: env });
  relayToServers(out, env, conn.serverId);
  toLocalUsers(out, env, false);
  if (!had || had.serverId !== env.from) {
    out.log("debug", "user.remote_online", { user: p.user_id, server: env.from });
  }
}

/** USER_REMOVE from another server: applied only when the mapping still points at that server. */
export function onRemoteRemove(out: Out, conn: Conn, env: Envelope<"USER_REMOVE">): void {
  const { state } = out;
  const p = env.payload;
  if (!speaksForItself(out, conn, env)) return;
  if (env.from === state.config.serverId) return;
  if (env.ts < (state.presenceTs.get(p.user_id) ?? -Infinity)) return;
  if (state.presence.get(p.user_id)?.serverId === env.from) {
    state.presenceTs.set(p.user_id, env.ts);
    state.presence.delete(p.user_id);
    toLocalUsers(out, env, false);
  }
  relayToServers(out, env, conn.serverId);
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
  // A join connection that got no welcome in time: try the next entry.
  for (const c of state.conns.values()) {
    if (
      c.dial?.purpose === "join" && c.role === "pending" && now - c.openedAt > Math.max(linkTimeoutMs, 5000)
    ) {
      out.close(c.id, 1001, "no SERVER_WELCOME");
      c.openedAt = Infinity;
    }
  }
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
