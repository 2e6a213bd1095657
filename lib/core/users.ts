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
import { setPresenceTs } from "./state.ts";
import type { Conn, Limits, UserRecord } from "./types.ts";
import { staleness, takeHelloToken } from "./limits.ts";
import { keyFingerprint } from "../protocol/user_id.ts";
import { judgeUserKey, logKeyConflict, logKeyResolved, pinnedUserKey } from "./pins.ts";

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
  const verdict = judgeUserKey(state, userId, env.payload.pubkey);
  if (verdict === "conflict") {
    logKeyConflict(out, userId, env.payload.pubkey, "hello");
    return out.error(
      conn.id,
      userId,
      "BAD_KEY",
      `user ${userId} is bound to another key on this network (pinned ${
        keyFingerprint(pinnedUserKey(state, userId)!)
      }, yours ${keyFingerprint(env.payload.pubkey)})`,
      true,
    );
  }
  // PROFILE §16 proof of possession: a hello for a pinned id (or one whose key takes the id over) must be signed
  // by that key, with a fresh payload ts and an unused nonce. An unsigned hello only for an id never seen.
  const proven = verdict !== "new" || out.sig === "valid" ? possession(out, env) : "unsigned";
  if (verdict !== "new" && proven !== null) {
    return out.error(
      conn.id,
      userId,
      "INVALID_SIG",
      `user ${userId} is registered: ${proven}; sign USER_HELLO with the user's key and send payload ts and nonce`,
      true,
    );
  }
  const bound = state.users.get(userId);
  if (verdict === "same" && bound && !sameKeyMaterial(bound.encPubkey, encPubkey)) {
    return out.error(
      conn.id,
      userId,
      "BAD_KEY",
      `user ${userId} is bound to another encryption key at this server`,
      true,
    );
  }
  const here = state.localUsers.get(userId);
  if (here !== undefined) {
    // A second signed session of the same user: the newer one takes over (nobody without the key can lock the
    // user out, and an unsigned hello never displaces anyone). The older session is told in words and closed.
    if (proven !== null) {
      return out.error(conn.id, userId, "NAME_IN_USE", `user ${userId} is already connected`);
    }
    out.error(here, userId, "NAME_IN_USE", SIGNED_IN_ELSEWHERE);
    out.close(here, TAKEN_OVER_CLOSE, "signed in elsewhere");
    state.localUsers.delete(userId);
    out.log("info", "user.taken_over", { user: userId, old: here, conn: conn.id });
  } else if (state.presence.has(userId)) {
    return out.error(
      conn.id,
      userId,
      "NAME_IN_USE",
      `user ${userId} is already connected at another server; sign out there first`,
    );
  }
  if (verdict === "replaces") logKeyResolved(out, userId, env.payload.pubkey, "hello");
  if (typeof env.payload.nonce === "string" && env.payload.nonce !== "" && proven === null) {
    // The nonce is used up for as long as a hello carrying it could pass the freshness check, across restarts.
    const key = `USER_HELLO|${userId}|${env.payload.nonce}`;
    const exp = (env.payload.ts ?? out.now) + state.config.limits.freshnessMs + 1000;
    state.seen.add(key, out.now, exp);
    out.persist({ op: "seen", key, exp });
  }
  if (verdict === "replaces") state.pins.delete(userId);

  const meta = env.payload.meta ? sanitizeMeta(env.payload.meta) : (bound?.meta ?? null);
  let user: UserRecord;
  if (!bound || verdict === "replaces") {
    user = { userId, pubkey: env.payload.pubkey, encPubkey, meta, version: (bound?.version ?? 0) + 1 };
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
      limits: helloLimits(state.config.limits), // so clients pace under them (docs/PROTOCOL.md)
    } as { msg_ref: string }),
  );
  sendSnapshot(out, conn.id, userId);
  const advert = advertFor(out, user);
  state.presence.set(userId, { userId, serverId: state.config.serverId, advert });
  setPresenceTs(state, userId, out.now);
  toLocalUsers(out, advert, true);
  toServers(out, advert, true);
  setHome(out, userId, state.config.serverId);
  channelJoin(out, conn.id, user);
  deliverQueued(out, conn.id, userId);
  out.log("info", "user.joined", { user: userId, conn: conn.id, name: displayName(user) });
}

/** The limits a user's connection is held to, as the hello ACK announces them (docs/PROTOCOL.md). */
export function helloLimits(l: Limits): Record<string, number> {
  return {
    rate_per_sec: l.ratePerSec,
    rate_burst: l.rateBurst,
    max_frame_bytes: l.maxFrameBytes,
    max_file_bytes: l.maxFileBytes,
  };
}

/** The detail of the ERROR an older session gets when a newer signed session of the same user takes over. */
export const SIGNED_IN_ELSEWHERE =
  "signed in elsewhere: a newer session of this identity took over this one (it was signed with the user's key)";

/** The close code of a session taken over by a newer one (4000-4999: ours; clients do not reconnect on it). */
export const TAKEN_OVER_CLOSE = 4001;

/**
 * PROFILE §16 proof of possession of the hello's key: `null` when the hello is signed by it (the shell verified
 * `sig` with the presented key), its payload `ts` is fresh and its `nonce` unused; else what is missing.
 */
function possession(out: Out, env: Envelope<"USER_HELLO">): string | null {
  const { state } = out;
  if (out.sig !== "valid") {
    return out.sig === "absent" ? "the hello is unsigned" : "its signature does not verify";
  }
  const ts = env.payload.ts;
  if (ts === undefined) return "the signed hello has no payload ts";
  const stale = staleness(ts, out.now, state.config.limits);
  if (stale) return `the signed hello's payload ts is stale (${stale})`;
  const nonce = env.payload.nonce;
  if (typeof nonce !== "string" || nonce.length < 8) {
    return "the signed hello has no nonce (8 or more characters)";
  }
  if (state.seen.has(`USER_HELLO|${env.from}|${nonce}`, out.now)) {
    return "its nonce was used before (a replay)";
  }
  return null;
}

/** The display label of a user (meta.display_name, else the id). */
export function displayName(user: UserRecord): string {
  const n = user.meta?.display_name;
  return typeof n === "string" && n.length > 0 ? n : user.userId;
}

/**
 * Characters dropped from display names (PROFILE §16): C0 and C1 controls, DEL, bidi overrides and isolates,
 * zero-width characters and the line/paragraph separators: nothing a name needs, everything a forger uses.
 */
// deno-lint-ignore no-control-regex
export const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

const META_KEYS = new Set(["display_name", "pronouns", "age", "avatar_url", "extras"]);

/** Keep only the standard's meta keys, bounded; strip {@linkcode UNSAFE_TEXT} from strings. */
export function sanitizeMeta(meta: Record<string, unknown>): Record<string, unknown> | null {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (!META_KEYS.has(k)) continue;
    if (typeof v === "string") out[k] = v.replace(UNSAFE_TEXT, "").slice(0, 128);
    else if (k === "age" && typeof v === "number" && Number.isFinite(v)) out[k] = v;
    else if (k === "extras" && v && typeof v === "object" && JSON.stringify(v).length <= 2048) out[k] = v;
  }
  return Object.keys(out).length ? out : null;
}
