/**
 * Dial-back links (PROFILE §15): some introducers close the join socket after welcoming and then dial the joiner's
 * advertised address, opening with `SERVER_PRESENCE_SYNC {server_id, users}` and no hello. Such a connection
 * becomes the link to that introducer only when its `from` is the server a welcome pinned (a bootstrap entry's
 * key, pinned by `onWelcome`) and its `sig` verified with that pinned key (PROFILE §16: no unverified frame
 * becomes a link or a key). `users` are read as that server's adverts. Our redials to it open with
 * SERVER_ANNOUNCE, since such servers ignore SERVER_HELLO_LINK.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { onRemoteAdvert } from "./gossip.ts";
import { linkUp } from "./links.ts";
import type { Out } from "./out.ts";
import type { Conn } from "./types.ts";

/** True when `serverId` is pinned with a bootstrap entry's key: the introducer a welcome of ours pinned. */
function pinnedByWelcome(out: Out, serverId: string): boolean {
  const rec = out.state.servers.get(serverId);
  return rec !== undefined &&
    out.state.config.federation.bootstrap.some((b) => sameKeyMaterial(b.pubkey, rec.pubkey));
}

/**
 * SERVER_PRESENCE_SYNC as the first frame of an inbound connection: the introducer dialing us back. Its signature
 * already verified with the key pinned for `from` (verify.ts, and the rule's `sign: "always"`).
 */
export function onDialBack(out: Out, conn: Conn, env: Envelope<"SERVER_PRESENCE_SYNC">): void {
  const { state } = out;
  const from = env.from;
  if (from === state.config.serverId || !isServerId(from) || !pinnedByWelcome(out, from)) {
    out.error(
      conn.id,
      from,
      "UNKNOWN_TYPE",
      "SERVER_PRESENCE_SYNC opens a link only from the introducer that welcomed this server; send a server hello",
    );
    out.log("warn", "dial_back.refused", { server: from, reason: "not the server a welcome pinned" });
    return out.close(conn.id, 1008, "not our introducer");
  }
  // The join socket it closed may not have been reported closed yet, and a redial of ours may be pending on it
  // (LINK, which such servers ignore): the dial-back replaces both.
  const existing = state.links.get(from);
  const old = existing === undefined ? undefined : state.conns.get(existing);
  if (old && old.id !== conn.id && old.dial?.purpose === "join") {
    state.links.delete(from);
    state.linkDialer.delete(old.id);
    out.close(old.id, 1000, "replaced by the introducer's dial-back");
  }
  for (const c of state.conns.values()) {
    if (c.role === "pending" && c.dial?.serverId === from) out.close(c.id, 1000, "linked by its dial-back");
  }
  if (!linkUp(out, conn, from, from)) return;
  state.helloKind.set(from, "announce");
  out.log("info", "dial_back.linked", { server: from, conn: conn.id });
  onPresenceSync(out, conn, env);
}

/** SERVER_PRESENCE_SYNC on a link: each entry of `users` at that server is read as its USER_ADVERTISE. */
export function onPresenceSync(out: Out, conn: Conn, env: Envelope<"SERVER_PRESENCE_SYNC">): void {
  const from = env.from;
  if (from !== conn.serverId) return; // a sync relayed from another server speaks for that one: not for us
  let skipped = 0;
  const mark = out.effects.length;
  for (const u of env.payload.users ?? []) {
    const e = u as Record<string, unknown> | null;
    const ok = e !== null && typeof e === "object" && typeof e.user_id === "string" &&
      isServerId(e.user_id) &&
      (e.server_id === undefined || e.server_id === from) &&
      (e.pubkey === undefined || typeof e.pubkey === "string") &&
      (e.meta === undefined || (e.meta !== null && typeof e.meta === "object" && !Array.isArray(e.meta)));
    if (!ok) {
      skipped++;
      continue;
    }
    const payload: Envelope<"USER_ADVERTISE">["payload"] = { user_id: e.user_id as string, server_id: from };
    if (e.meta !== undefined) payload.meta = e.meta as Record<string, unknown>;
    if (e.pubkey !== undefined) payload.pubkey = e.pubkey as string;
    // Unsigned: the PRESENCE_SYNC's signature covered it, not this advert, so it is never relayed to servers.
    onRemoteAdvert(out, conn, { type: "USER_ADVERTISE", from, to: "*", ts: env.ts, payload });
  }
  if (skipped > 0) out.log("debug", "presence_sync.skipped", { server: from, entries: skipped });
  // One frame, at most one ERROR (never a storm): entries refused one by one (a key conflict, PROFILE §16) are
  // each logged, but only the first refusal goes back to the peer.
  let errors = 0;
  const keep = out.effects.slice(mark).filter((fx) =>
    !(fx.kind === "send" && fx.conn === conn.id && fx.frame.type === "ERROR" && errors++ > 0)
  );
  out.effects.length = mark;
  for (const fx of keep) out.effects.push(fx);
}
