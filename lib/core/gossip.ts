/**
 * Gossip between linked servers (SOCP §8, PROFILE §3, §6, §12, §15): presence adverts and removals, the
 * newcomer's SERVER_ANNOUNCE, and the `user_locations` some servers send instead.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { keyPolicy, parseAcceptableKey, sameKeyMaterial } from "../protocol/keys.ts";
import type { Out } from "./out.ts";
import { setHome } from "./offline.ts";
import { allowedServerKey, newDial, pin } from "./links.ts";
import { toLocalUsers } from "./presence.ts";
import { setPresenceTs } from "./state.ts";
import type { Conn, State } from "./types.ts";
import { judgeUserKey, logKeyConflict, logKeyResolved, pinnedUserKey, pinRemoteUser } from "./pins.ts";

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
  if (
    !parseAcceptableKey(p.pubkey, keyPolicy(state.config.labWeakKeys)).ok ||
    !allowedServerKey(state, p.pubkey)
  ) {
    return;
  }
  pin(out, {
    serverId: env.from,
    host: p.host,
    port: p.port,
    pubkey: pinned?.pubkey ?? p.pubkey,
    ...(pinned ? {} : { unlinked: true as const }),
  });
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
  // An unsigned frame (an advert read from a dial-back PRESENCE_SYNC, PROFILE §15) would be refused by every
  // receiver: it carries no signature of its origin. It stays here.
  if (!env.sig) return;
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
  // PROFILE §16: one key per id, network-wide. An advert presenting another key for a pinned id is refused,
  // logged and never relayed; without a key it cannot move a pinned user to another home.
  const key = advertKey(state, env);
  const verdict = key === undefined ? undefined : judgeUserKey(state, p.user_id, key);
  if (key !== undefined && verdict === "conflict") {
    logKeyConflict(out, p.user_id, key, `advert from ${env.from}`);
    return out.error(
      conn.id,
      conn.serverId ?? env.from,
      "BAD_KEY",
      `USER_ADVERTISE for ${p.user_id}: that user is pinned to another key on this network (not relayed)`,
    );
  }
  if (key === undefined && pinnedUserKey(state, p.user_id) !== undefined) {
    const home = state.homes.get(p.user_id);
    if (home !== undefined && home !== env.from) {
      out.log("warn", "advert.keyless_move", { user: p.user_id, server: env.from, home });
      return;
    }
  }
  if (key !== undefined && verdict === "replaces") {
    logKeyResolved(out, p.user_id, key, `advert from ${env.from}`);
    const bound = state.users.get(p.user_id);
    if (bound) {
      const user = { ...bound, pubkey: key, encPubkey: key, version: bound.version + 1 };
      state.users.set(p.user_id, user);
      out.persist({ op: "upsertUser", user });
    }
  }
  if (key !== undefined && verdict !== "same") pinRemoteUser(out, p.user_id, key);
  setPresenceTs(state, p.user_id, env.ts);
  setHome(out, p.user_id, env.from);
  const had = state.presence.get(p.user_id);
  state.presence.set(p.user_id, { userId: p.user_id, serverId: env.from, advert: env });
  relayToServers(out, env, conn.serverId);
  toLocalUsers(out, env, false);
  if (!had || had.serverId !== env.from) {
    out.log("debug", "user.remote_online", { user: p.user_id, server: env.from });
  }
}

/** The user key an advert presents: `payload.pubkey`, else `meta.pubkey` (PROFILE §6), if any. */
function advertKey(state: State, env: Envelope<"USER_ADVERTISE">): string | undefined {
  const p = env.payload as { pubkey?: unknown; meta?: unknown };
  const m = p.meta as { pubkey?: unknown } | null | undefined;
  const key = typeof p.pubkey === "string" && p.pubkey !== ""
    ? p.pubkey
    : m && typeof m === "object" && typeof m.pubkey === "string" && m.pubkey !== ""
    ? m.pubkey
    : undefined;
  // A key that is no acceptable RSA key is no claim at all (and is never pinned).
  return key !== undefined && parseAcceptableKey(key, keyPolicy(state.config.labWeakKeys)).ok
    ? key
    : undefined;
}

/** USER_REMOVE from another server: applied only when the mapping still points at that server. */
export function onRemoteRemove(out: Out, conn: Conn, env: Envelope<"USER_REMOVE">): void {
  const { state } = out;
  const p = env.payload;
  if (!speaksForItself(out, conn, env)) return;
  if (env.from === state.config.serverId) return;
  if (env.ts < (state.presenceTs.get(p.user_id) ?? -Infinity)) return;
  if (state.presence.get(p.user_id)?.serverId === env.from) {
    setPresenceTs(state, p.user_id, env.ts);
    state.presence.delete(p.user_id);
    toLocalUsers(out, env, false);
  }
  relayToServers(out, env, conn.serverId);
}

/**
 * An advert that would bring back a user this node does not have online at that server is not a duplicate to
 * drop: an earlier copy of the same frame may have been ignored, not applied (a server makes fresh adverts for
 * each new link, and two made in the same millisecond are the same frame; the copy a third server relays before
 * our link to their server is up is ignored, so the copy over the new link must count). It goes through every
 * other check again. It cannot loop: once applied the user is present, and further copies are duplicates again.
 */
export function restoresPresence(state: State, env: Envelope<"USER_ADVERTISE">): boolean {
  const p = env.payload as { user_id?: unknown; server_id?: unknown };
  return typeof p.user_id === "string" && state.presence.get(p.user_id)?.serverId !== p.server_id;
}
