/**
 * The public channel (PROFILE §8). The channel key is an RSA-4096 key pair, created once per network by the first
 * introducer and handed to joining servers in SERVER_WELCOME. Members only grow; `version` is `max(known) + 1`
 * on each change and receivers take the maximum, so concurrent joins converge.
 *
 * The reducer decides who gets what; the shell does the crypto (wrapping the channel key for a member, the
 * channel key's `content_sig`) through the `seal` of a send effect.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { relayToServers } from "./gossip.ts";
import type { Out } from "./out.ts";
import { toLocalUsers } from "./presence.ts";
import type { Conn, UserRecord } from "./types.ts";

/** A user joined at this server: make them a member and hand them the key (PROFILE §6 step 4). */
export function channelJoin(out: Out, conn: number, user: UserRecord): void {
  const { state } = out;
  const ch = state.channel;
  if (!ch) return;
  if (!ch.members.has(user.userId)) {
    const ifVersion = ch.version;
    ch.version += 1;
    ch.members.add(user.userId);
    out.persist({ op: "channel", version: ch.version, creatorPub: ch.creatorPub });
    out.persist({ op: "member", memberId: user.userId, wrappedKey: "", now: out.now });
    const add = out.frame("PUBLIC_CHANNEL_ADD", "*", { add: [user.userId], if_version: ifVersion });
    const updated = out.frame("PUBLIC_CHANNEL_UPDATED", "*", {
      version: ch.version,
      wraps: [{ member_id: user.userId, wrapped_key: "" }],
    });
    for (const c of state.links.values()) {
      out.send(c, add);
      out.send(c, updated, true, { kind: "updated", forKey: user.encPubkey });
    }
  }
  shareKey(out, conn, user);
}

/** Send a user PUBLIC_CHANNEL_KEY_SHARE with their wrapped copy of the channel key. */
export function shareKey(out: Out, conn: number, user: UserRecord): void {
  const ch = out.state.channel;
  if (!ch) return;
  const share = out.frame("PUBLIC_CHANNEL_KEY_SHARE", user.userId, {
    shares: [{ member: user.userId, wrapped_public_channel_key: "" }],
    creator_pub: ch.creatorPub,
    content_sig: "",
  });
  out.send(conn, share, true, { kind: "keyShare", forKey: user.encPubkey });
}

/** The shell holds the channel key now: hand it to everyone already online here. */
export function channelReady(out: Out, version: number, creatorPub: string): void {
  const { state } = out;
  const known = state.channel;
  state.channelPending = false;
  if (known && known.creatorPub === creatorPub) {
    known.version = Math.max(known.version, version);
  } else {
    state.channel = { version, creatorPub, members: new Set() };
  }
  out.persist({ op: "channel", version: state.channel!.version, creatorPub });
  out.log("info", "channel.ready", { version: state.channel!.version });
  for (const [userId, conn] of state.localUsers) {
    const user = state.users.get(userId);
    if (user) channelJoin(out, conn, user);
  }
}

/** PUBLIC_CHANNEL_ADD from a server: members grow, the version converges to the maximum. */
export function onChannelAdd(out: Out, conn: Conn, env: Envelope<"PUBLIC_CHANNEL_ADD">): void {
  const ch = out.state.channel;
  if (ch) {
    for (const m of env.payload.add) {
      if (!ch.members.has(m)) {
        ch.members.add(m);
        out.persist({ op: "member", memberId: m, wrappedKey: "", now: out.now });
      }
    }
    bumpTo(out, env.payload.if_version + 1);
  }
  relayToServers(out, env, conn.serverId);
}

/**
 * PUBLIC_CHANNEL_UPDATED from a server: record the wraps, take the maximum version. Deployed servers send
 * `{version, added}` or `{version, removed}` without wraps (PROFILE §15): `added` user ids become members (members
 * only grow, so `removed` changes nothing); entries we cannot read are ignored, never struck.
 */
export function onChannelUpdated(out: Out, conn: Conn, env: Envelope<"PUBLIC_CHANNEL_UPDATED">): void {
  const ch = out.state.channel;
  const p = env.payload;
  if (ch) {
    for (const w of p.wraps ?? []) {
      ch.members.add(w.member_id);
      out.persist({ op: "member", memberId: w.member_id, wrappedKey: w.wrapped_key, now: out.now });
    }
    for (const m of p.added ?? []) {
      const id = typeof m === "string" ? m : memberOf(m);
      if (id === undefined || ch.members.has(id)) continue;
      ch.members.add(id);
      out.persist({ op: "member", memberId: id, wrappedKey: "", now: out.now });
    }
    if (p.removed?.length) {
      out.log("debug", "channel.removed_ignored", { server: env.from, n: p.removed.length });
    }
    bumpTo(out, p.version);
  }
  relayToServers(out, env, conn.serverId);
}

/** A member id from an `added` entry written as an object (`{member_id}`, `{user_id}` or `{member}`). */
function memberOf(m: unknown): string | undefined {
  if (m === null || typeof m !== "object") return undefined;
  const o = m as Record<string, unknown>;
  const id = o.member_id ?? o.user_id ?? o.member;
  return typeof id === "string" && id.length > 0 && id.length <= 128 ? id : undefined;
}

/**
 * The most a channel version may grow by in one frame (PROFILE §16): concurrent joins move it by one each, so a
 * bigger step is a lie (one `{version: 2^53-1}` would otherwise poison the version network-wide).
 */
export const MAX_VERSION_STEP = 100_000;

function bumpTo(out: Out, version: number): void {
  const ch = out.state.channel!;
  if (version > ch.version + MAX_VERSION_STEP || version >= Number.MAX_SAFE_INTEGER) {
    out.log("warn", "channel.version_refused", {
      version,
      known: ch.version,
      reason: `a channel version may grow by at most ${MAX_VERSION_STEP} at a time`,
    });
    return;
  }
  if (version > ch.version) {
    ch.version = version;
    out.persist({ op: "channel", version, creatorPub: ch.creatorPub });
  }
}

/** PUBLIC_CHANNEL_KEY_SHARE from a server (deployed servers broadcast it): hand it to the members that are here. */
export function onKeyShareFromServer(out: Out, _conn: Conn, env: Envelope<"PUBLIC_CHANNEL_KEY_SHARE">): void {
  const seen = new Set<number>();
  for (const s of env.payload.shares) {
    const c = out.state.localUsers.get(s.member);
    if (c !== undefined && !seen.has(c)) {
      seen.add(c);
      out.send(c, env, false);
    }
  }
}

/** MSG_PUBLIC_CHANNEL from a local user: to the other local users unchanged, to every server re-signed. */
export function publicFromUser(out: Out, _conn: Conn, env: Envelope<"MSG_PUBLIC_CHANNEL">): void {
  toLocalUsers(out, env, false, env.from);
  for (const c of out.state.links.values()) out.send(c, env, true);
  out.log("debug", "public.sent", { from: env.from, servers: out.state.links.size });
}

/** MSG_PUBLIC_CHANNEL from a server: to our local users, never further. */
export function publicFromServer(out: Out, _conn: Conn, env: Envelope<"MSG_PUBLIC_CHANNEL">): void {
  toLocalUsers(out, env, false, env.from);
}
