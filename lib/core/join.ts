/**
 * Joining a network (SOCP §8, PROFILE §8, §12, §15): the bootstrap list and the introducer's welcome on the
 * joiner's side; SERVER_HELLO_JOIN and the welcome on the introducer's side; the first server of a network, which
 * asks for the channel key.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { keyPolicy, parseAcceptableKey, sameKeyMaterial } from "../protocol/keys.ts";
import { SOFTWARE } from "../version.ts";
import { userLocations } from "./gossip.ts";
import {
  checkServerKey,
  FIRST_BACKOFF_MS,
  isPemDialect,
  linkDialFailed,
  linkUp,
  MAX_BACKOFF_MS,
  newDial,
  ourKeyFor,
  pin,
  scheduleRedial,
} from "./links.ts";
import type { Out } from "./out.ts";
import { advertFor } from "./presence.ts";
import type { Conn, DialIntent, State } from "./types.ts";
import { takeJoinToken } from "./limits.ts";

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
      const first = list.findIndex((b) => !sameKeyMaterial(b.pubkey, state.config.serverPub));
      if (first >= 0) joinDial(out, first, wait);
    }
    return;
  }
  state.join.phase = "joining";
  joinDial(out, index, afterMs);
}

/** Dial bootstrap entry `index` to join through it. */
function joinDial(out: Out, index: number, afterMs: number): void {
  const e = out.state.config.federation.bootstrap[index];
  const intent = {
    purpose: "join" as const,
    host: e.host,
    port: e.port,
    expectKey: e.pubkey,
    bootstrapIndex: index,
  };
  newDial(out, { ...intent, path: e.path, tls: e.tls }, afterMs);
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

/**
 * A dial failed (refused, timed out, or closed before it was a link or got its welcome): a join dial moves on to
 * the next bootstrap entry; a link dial is redialed (see linkDialFailed).
 */
export function dialFailed(out: Out, intent: DialIntent, reason: string, answered = false): void {
  if (intent.purpose === "join") {
    out.log("info", "join.failed", { host: intent.host, port: intent.port, reason });
    if (out.state.join.phase === "joining") tryBootstrap(out, (intent.bootstrapIndex ?? 0) + 1, 0);
    return;
  }
  linkDialFailed(out, intent, reason, answered);
}

/** How long a join connection waits for SERVER_WELCOME. */
function welcomeWaitMs(state: State): number {
  return Math.max(state.config.federation.linkTimeoutMs, 5000);
}

/** A join connection that got no welcome in time: close it, so the next entry is tried (called on each tick). */
export function joinTimers(out: Out): void {
  const { now } = out;
  const wait = welcomeWaitMs(out.state);
  for (const c of out.state.conns.values()) {
    if (c.dial?.purpose === "join" && c.role === "pending" && now - c.openedAt > wait) {
      out.close(c.id, 1001, "no SERVER_WELCOME");
      c.openedAt = Infinity;
    }
  }
}

/** When {@linkcode joinTimers} next gives up on a join connection (Infinity: none waits for a welcome). */
export function joinDeadline(state: State): number {
  const wait = welcomeWaitMs(state);
  let first = Infinity;
  for (const c of state.conns.values()) {
    if (c.dial?.purpose === "join" && c.role === "pending") first = Math.min(first, c.openedAt + wait + 1);
  }
  return first;
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
  if (!takeJoinToken(state, conn.addr, out.now)) {
    const { joinPerMin, joinBurst } = state.config.limits;
    out.error(
      conn.id,
      env.from,
      "UNKNOWN_TYPE",
      `too many SERVER_HELLO_JOINs from your address (at most ${joinPerMin} a minute, ${joinBurst} at once): try again later`,
    );
    return out.close(conn.id, 1008, "join rate limit");
  }
  if (!checkServerKey(out, conn, p.pubkey, env.from)) return;
  const requested = env.from;
  const signed = out.sig === "valid";
  // PROFILE §16: a JOIN presenting a pinned server's key must be signed by it (the key is public: it is on that
  // server's /.well-known/socp). Without the signature it is a stranger holding someone else's key: refused.
  const owner = [...state.servers.values()].find((r) => !r.claimed && sameKeyMaterial(r.pubkey, p.pubkey));
  if (!signed && owner) {
    out.log("warn", "join.refused", {
      server: requested,
      reason: `unsigned JOIN presents the pinned key of server ${owner.serverId}`,
      addr: conn.addr,
    });
    out.error(
      conn.id,
      requested,
      "INVALID_SIG",
      `this key is pinned to a server of this network: sign SERVER_HELLO_JOIN with it`,
    );
    return out.close(conn.id, 1008, "unsigned JOIN with a pinned key");
  }
  const pinned = state.servers.get(requested);
  // A pinned id is the joiner's only when it proves the pinned key; anyone else is a stranger with a fresh id.
  const taken = !isServerId(requested) || requested === state.config.serverId ||
    (pinned !== undefined && (!signed || !sameKeyMaterial(pinned.pubkey, p.pubkey)));
  const assigned = taken ? (fresh ?? `${requested}-1`) : requested;
  conn.pemDialect = isPemDialect(p.pubkey);
  // An unsigned JOIN's pin lives only as long as its link unless a verified frame comes over it, and its
  // address (unsigned) is never dialed: the joiner redials us. A signed JOIN vouches for its own address.
  pin(out, {
    serverId: assigned,
    host: p.host,
    port: p.port,
    pubkey: p.pubkey,
    ...(signed ? {} : { noDial: true as const, claimed: true as const }),
  });
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
    if (!parseAcceptableKey(s.pubkey, keyPolicy(state.config.labWeakKeys)).ok) continue;
    pin(out, {
      serverId: s.server_id,
      host: s.host,
      port: s.port,
      pubkey: known?.pubkey ?? s.pubkey,
      ...(known ? {} : { unlinked: true as const }),
    });
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
