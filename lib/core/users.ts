/**
 * USER_HELLO: key binding and the acceptance sequence of PROFILE §6.
 *
 * @module
 */
import { type Envelope, isUuid } from "../protocol/envelope.ts";
import { keyPolicy, parseAcceptableKey, sameKeyMaterial } from "../protocol/keys.ts";
import type { Out } from "./out.ts";
import { channelJoin } from "./channel.ts";
import { deliverQueued, setHome } from "./offline.ts";
import { advertFor, sendSnapshot, toLocalUsers, toServers } from "./presence.ts";
import type { Conn, UserRecord } from "./types.ts";
import { takeHelloToken } from "./limits.ts";

function sameMeta(a: Record<string, unknown> | null, b: Record<string, unknown> | null): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

/** Handle a USER_HELLO on a pending connection. */
export function hello(out: Out, conn: Conn, env: Envelope<"USER_HELLO">): void {
  const { state } = out;
  const userId = env.from;
  if (!takeHelloToken(state, conn.addr, out.now)) {
    // The detail is the same for every refusal, so its signature is made once (the signer caches by payload).
    const { helloPerSec, helloBurst } = state.config.limits;
    return out.error(
      conn.id,
      userId,
      "UNKNOWN_TYPE",
      `too many USER_HELLOs from your address (at most ${helloPerSec}/s, ${helloBurst} at once): wait a second, then send USER_HELLO again`,
      true,
    );
  }
  const policy = keyPolicy(state.config.labWeakKeys);
  if (!isUuid(userId)) {
    return out.error(conn.id, userId, "BAD_KEY", "the user id (from) must be a UUID", true);
  }
  const pub = parseAcceptableKey(env.payload.pubkey, policy);
  if (!pub.ok) return out.error(conn.id, userId, "BAD_KEY", `pubkey: ${pub.reason}`, true);
  const encPubkey = env.payload.enc_pubkey ?? env.payload.pubkey;
  if (encPubkey !== env.payload.pubkey) {
    const enc = parseAcceptableKey(encPubkey, policy);
    if (!enc.ok) return out.error(conn.id, userId, "BAD_KEY", `enc_pubkey: ${enc.reason}`, true);
  }
  if (state.localUsers.has(userId) || state.presence.has(userId)) {
    return out.error(conn.id, userId, "NAME_IN_USE", `user ${userId} is already connected`);
  }
  const bound = state.users.get(userId);
  if (
    bound &&
    (!sameKeyMaterial(bound.pubkey, env.payload.pubkey) || !sameKeyMaterial(bound.encPubkey, encPubkey))
  ) {
    return out.error(
      conn.id,
      userId,
      "BAD_KEY",
      `user ${userId} is bound to another key at this server`,
      true,
    );
  }

  const meta = env.payload.meta ? sanitizeMeta(env.payload.meta) : (bound?.meta ?? null);
  let user: UserRecord;
  if (!bound) {
    user = { userId, pubkey: env.payload.pubkey, encPubkey, meta, version: 1 };
    out.persist({ op: "upsertUser", user });
  } else if (!sameMeta(bound.meta, meta)) {
    user = { ...bound, meta, version: bound.version + 1 };
    out.persist({ op: "upsertUser", user });
  } else {
    user = bound;
  }
  state.users.set(userId, user);
  conn.role = "user";
  conn.userId = userId;
  state.localUsers.set(userId, conn.id);

  // PROFILE §6 acceptance order: ACK, snapshot of the others, own advert to everyone (newcomer included).
  out.send(
    conn.id,
    out.frame("ACK", userId, {
      msg_ref: "USER_HELLO",
      server_id: state.config.serverId,
      server_pub: state.config.serverPub,
    } as { msg_ref: string }),
  );
  sendSnapshot(out, conn.id, userId);
  const advert = advertFor(out, user);
  state.presence.set(userId, { userId, serverId: state.config.serverId, advert });
  state.presenceTs.set(userId, out.now);
  toLocalUsers(out, advert, true);
  toServers(out, advert, true);
  setHome(out, userId, state.config.serverId);
  channelJoin(out, conn.id, user);
  deliverQueued(out, conn.id, userId);
  out.log("info", "user.joined", { user: userId, conn: conn.id, name: displayName(user) });
}

/** The display label of a user (meta.display_name, else the id). */
export function displayName(user: UserRecord): string {
  const n = user.meta?.display_name;
  return typeof n === "string" && n.length > 0 ? n : user.userId;
}

const META_KEYS = new Set(["display_name", "pronouns", "age", "avatar_url", "extras"]);

/** Keep only the standard's meta keys, bounded; strip control characters from display names. */
export function sanitizeMeta(meta: Record<string, unknown>): Record<string, unknown> | null {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (!META_KEYS.has(k)) continue;
    // deno-lint-ignore no-control-regex
    if (typeof v === "string") out[k] = v.replace(/[\u0000-\u001f\u007f]/g, "").slice(0, 128);
    else if (k === "age" && typeof v === "number" && Number.isFinite(v)) out[k] = v;
    else if (k === "extras" && v && typeof v === "object" && JSON.stringify(v).length <= 2048) out[k] = v;
  }
  return Object.keys(out).length ? out : null;
}
