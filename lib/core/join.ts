/**
 * Joining a network (SOCP §8, PROFILE §8, §12, §15), the joiner's side: the bootstrap list, the introducer's
 * welcome, the first server of a network (which asks for the channel key). The introducer's side
 * (SERVER_HELLO_JOIN and the welcome it answers with) is in admit.ts.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { keyPolicy, parseAcceptableKey, sameKeyMaterial } from "../protocol/keys.ts";
import { keyFingerprint } from "../protocol/user_id.ts";

import { userLocations } from "./gossip.ts";
import {
  FIRST_BACKOFF_MS,
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
import type { Conn, DialIntent, SigCheck, State } from "./types.ts";

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

/**
 * PROFILE §16: a welcome on a join dial not signed by the bootstrap entry's key is a failed join, not a link. One
 * ERROR tells the other side why (never a storm: the connection closes with it).
 */
export function welcomeNotFromEntry(
  out: Out,
  conn: Conn,
  env: Envelope<"SERVER_WELCOME">,
  sig: SigCheck,
): void {
  const dial = conn.dial!;
  const named = env.payload.server_pub ?? env.payload.pubkey;
  out.log("warn", "join.wrong_key", {
    host: dial.host,
    port: dial.port,
    expected: keyFingerprint(dial.expectKey),
    presented: named === undefined ? "(none named)" : keyFingerprint(named),
    sig,
    note: "the welcome is not signed by the bootstrap entry's key: check the entry",
  });
  out.send(
    conn.id,
    out.frame("ERROR", env.from, {
      code: "INVALID_SIG",
      detail: `SERVER_WELCOME is ${
        sig === "absent" ? "unsigned" : "not signed by the key of the bootstrap entry we joined with"
      }`,
    }),
  );
  out.close(conn.id, 1000, "SERVER_WELCOME not signed by the bootstrap key");
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
