/**
 * Presence: the adverts of online users and their relay to local users (PROFILE §6).
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import type { Out } from "./out.ts";
import { setPresenceTs } from "./state.ts";
import type { UserRecord } from "./types.ts";

/** The USER_ADVERTISE this server issues for one of its users (PROFILE §6 payload). */
export function advertFor(out: Out, user: UserRecord): Envelope<"USER_ADVERTISE"> {
  const meta: Record<string, unknown> = { ...(user.meta ?? {}), pubkey: user.pubkey };
  return out.frame("USER_ADVERTISE", "*", {
    user_id: user.userId,
    server_id: out.state.config.serverId,
    meta,
    pubkey: user.pubkey,
  });
}

/** Send a frame to every local user (optionally except one). */
export function toLocalUsers(out: Out, frame: Envelope, sign: boolean, except?: string): void {
  for (const [userId, conn] of out.state.localUsers) {
    if (userId !== except) out.send(conn, frame, sign);
  }
}

/** Send a frame to every linked server. */
export function toServers(out: Out, frame: Envelope, sign: boolean): void {
  for (const conn of out.state.links.values()) out.send(conn, frame, sign);
}

/** Send a newcomer every advert of the users already online (stored frames, unchanged). */
export function sendSnapshot(out: Out, conn: number, except: string): void {
  for (const p of out.state.presence.values()) {
    if (p.userId === except) continue;
    // Our own users' adverts are unsigned templates: the shell signs them (once per payload, cached).
    out.send(conn, p.advert, p.serverId === out.state.config.serverId);
  }
}

/** A user left this server: forget them and tell the local users. */
export function userLeft(out: Out, userId: string): void {
  const p = out.state.presence.get(userId);
  out.state.localUsers.delete(userId);
  if (!p || p.serverId !== out.state.config.serverId) return;
  out.state.presence.delete(userId);
  setPresenceTs(out.state, userId, out.now);
  const remove = out.frame("USER_REMOVE", "*", { user_id: userId, server_id: out.state.config.serverId });
  toLocalUsers(out, remove, true);
  toServers(out, remove, true);
  out.log("info", "user.left", { user: userId });
}
