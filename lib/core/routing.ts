/**
 * Direct messages (PROFILE §7): local delivery, SERVER_DELIVER to a remote user's server, and forwarding.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import type { Out } from "./out.ts";
import type { Conn } from "./types.ts";

function deliverLocal(out: Out, conn: number, to: string, f: {
  ciphertext: string;
  sender: string;
  sender_pub: string;
  content_sig: string;
}, ts: number): void {
  out.send(conn, out.frame("USER_DELIVER", to, f, ts));
}

/** MSG_DIRECT from a local user: deliver locally, hand to the recipient's server, or say USER_NOT_FOUND. */
export function direct(out: Out, conn: number, env: Envelope<"MSG_DIRECT">): void {
  const { state } = out;
  const p = env.payload;
  const local = state.localUsers.get(env.to);
  if (local !== undefined) {
    deliverLocal(out, local, env.to, {
      ciphertext: p.ciphertext,
      sender: env.from,
      sender_pub: p.sender_pub,
      content_sig: p.content_sig,
    }, env.ts);
    out.log("debug", "dm.delivered", { from: env.from, to: env.to });
    return;
  }
  const home = state.presence.get(env.to)?.serverId;
  const link = home !== undefined ? state.links.get(home) : undefined;
  if (home !== undefined && link !== undefined) {
    const deliver = out.frame("SERVER_DELIVER", home, {
      user_id: env.to,
      ciphertext: p.ciphertext,
      sender: env.from,
      sender_pub: p.sender_pub,
      content_sig: p.content_sig,
    }, env.ts);
    out.send(link, deliver);
    out.log("debug", "dm.forwarded", { from: env.from, to: env.to, server: home });
    return;
  }
  const detail = home !== undefined
    ? `user ${env.to}'s server ${home} is unreachable`
    : state.users.has(env.to)
    ? `user ${env.to} is not online`
    : `user ${env.to} is not known on this network`;
  out.error(conn, env.from, "USER_NOT_FOUND", detail);
}

/** SERVER_DELIVER from a linked server: deliver to a local user, forward unchanged, or report USER_NOT_FOUND. */
export function serverDeliver(out: Out, conn: Conn, env: Envelope<"SERVER_DELIVER">): void {
  const { state } = out;
  const p = env.payload;
  const ts = p.orig_ts ?? env.ts;
  const local = state.localUsers.get(p.user_id);
  if (local !== undefined) {
    deliverLocal(out, local, p.user_id, {
      ciphertext: p.ciphertext,
      sender: p.sender,
      sender_pub: p.sender_pub,
      content_sig: p.content_sig,
    }, ts);
    out.log("debug", "dm.delivered", { from: p.sender, to: p.user_id, via: env.from });
    return;
  }
  const home = state.presence.get(p.user_id)?.serverId;
  const link = home !== undefined ? state.links.get(home) : undefined;
  if (home !== undefined && link !== undefined && home !== conn.serverId && home !== env.from) {
    out.send(link, env, false); // unchanged: original from and sig (PROFILE §3)
    return;
  }
  out.error(conn.id, conn.serverId ?? env.from, "USER_NOT_FOUND", `user ${p.user_id} is not on this server`);
}
