/**
 * Direct messages (PROFILE §7, §10): local delivery, SERVER_DELIVER to a remote user's server, forwarding, and
 * store-and-forward for users who are offline.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { ackMode } from "./links.ts";
import { ack, enqueue, toOutbox } from "./offline.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import type { Out } from "./out.ts";
import type { Conn, State } from "./types.ts";

/** Where a frame for an online user goes next. */
export type Route = { kind: "local"; conn: number } | { kind: "server"; conn: number; serverId: string };

/** The route to an online user: their local connection, or the link to their server (never back to `except`). */
export function routeUser(state: State, userId: string, except?: string): Route | null {
  const local = state.localUsers.get(userId);
  if (local !== undefined) return { kind: "local", conn: local };
  const home = state.presence.get(userId)?.serverId;
  if (home === undefined || home === except || home === state.config.serverId) return null;
  const link = state.links.get(home);
  return link === undefined ? null : { kind: "server", conn: link, serverId: home };
}

interface Dm {
  ciphertext: string;
  sender: string;
  sender_pub: string;
  content_sig: string;
}

function userDeliver(out: Out, to: string, f: Dm, ts: number): Envelope<"USER_DELIVER"> {
  return out.frame("USER_DELIVER", to, {
    ciphertext: f.ciphertext,
    sender: f.sender,
    sender_pub: f.sender_pub,
    content_sig: f.content_sig,
  }, ts);
}

/** Where an offline user lives: here (registered, not known elsewhere), another server, or nowhere known. */
function offlineHome(state: State, userId: string): string | undefined {
  const home = state.homes.get(userId);
  if (home !== undefined) return home;
  return state.users.has(userId) ? state.config.serverId : undefined;
}

/** MSG_DIRECT from a local user. */
export function direct(out: Out, conn: number, env: Envelope<"MSG_DIRECT">): void {
  const { state } = out;
  const p = env.payload;
  const dm: Dm = {
    ciphertext: p.ciphertext,
    sender: env.from,
    sender_pub: p.sender_pub,
    content_sig: p.content_sig,
  };
  const route = routeUser(state, env.to);
  if (route?.kind === "local") {
    out.send(route.conn, userDeliver(out, env.to, dm, env.ts));
    out.log("debug", "dm.delivered", { from: env.from, to: env.to });
    return;
  }
  const online = state.presence.get(env.to)?.serverId;
  const home = online ?? offlineHome(state, env.to);
  const refs = { msg_ref: msgRef(out.digest) }; // what a refusal names (the client's ACK key, PROFILE §10)
  if (home === undefined) {
    return out.error(
      conn,
      env.from,
      "USER_NOT_FOUND",
      `user ${env.to} is not known on this network`,
      false,
      refs,
    );
  }
  if (home === state.config.serverId) {
    const full = enqueue(out, env.to, userDeliver(out, env.to, dm, env.ts));
    return full
      ? out.error(conn, env.from, "UNKNOWN_TYPE", full, false, refs)
      : ack(out, conn, env.from, out.digest);
  }
  const link = state.links.get(home);
  // PROFILE §15: every SERVER_DELIVER we originate carries orig_ts (some servers stamp USER_DELIVER with it), and
  // the same as `cts` (the name other servers read).
  const payload = { user_id: env.to, ...dm, orig_ts: env.ts, cts: env.ts };
  if (online !== undefined && link !== undefined) {
    out.send(link, out.frame("SERVER_DELIVER", home, payload, env.ts)); // live: no ACK
    out.log("debug", "dm.forwarded", { from: env.from, to: env.to, server: home });
    return;
  }
  if (link !== undefined && ackMode(state, home) === "no") {
    // A server that does not speak the ACK extension: handing the frame to its live link is delivery (it would
    // never ACK, and resends past its dedupe window would be duplicate DMs).
    out.send(link, out.frame("SERVER_DELIVER", home, payload, env.ts));
    return ack(out, conn, env.from, out.digest);
  }
  // Offline at another server, or their server unreachable: keep it in the outbox until that server confirms it
  // holds the frame (payload.ack asks it to ACK), then the outbox row goes. The sender hears "accepted" now.
  const deliver = out.frame("SERVER_DELIVER", home, { ...payload, ack: true }, env.ts);
  const full = toOutbox(out, home, deliver);
  if (full) return out.error(conn, env.from, "UNKNOWN_TYPE", full, false, refs);
  ack(out, conn, env.from, out.digest);
  if (link !== undefined) out.send(link, deliver);
}

/** SERVER_DELIVER from a linked server: deliver, queue, forward unchanged, or report USER_NOT_FOUND. */
export function serverDeliver(out: Out, conn: Conn, env: Envelope<"SERVER_DELIVER">): void {
  const { state } = out;
  const p = env.payload;
  const ts = p.orig_ts ?? p.cts ?? env.ts; // PROFILE §15: `cts` is the original ts under another name
  const dm: Dm = {
    ciphertext: p.ciphertext,
    sender: p.sender,
    sender_pub: p.sender_pub,
    content_sig: p.content_sig,
  };
  const route = routeUser(state, p.user_id, conn.serverId);
  const ref = p.ack ? msgRef(out.digest) : "";
  const confirm = (): void => {
    if (!p.ack) return;
    if (!state.acceptedRefs.has(ref)) {
      state.acceptedRefs.set(ref, out.now);
      if (state.acceptedRefs.size > 100_000) {
        state.acceptedRefs.delete(state.acceptedRefs.keys().next().value!);
      }
      out.persist({ op: "acceptRef", ref, now: out.now });
    }
    ack(out, conn.id, conn.serverId ?? env.from, out.digest);
  };
  if (p.ack && state.acceptedRefs.has(ref)) return confirm(); // taken before (perhaps before a restart)

  if (route?.kind === "local") {
    out.send(route.conn, userDeliver(out, p.user_id, dm, ts));
    out.log("debug", "dm.delivered", { from: p.sender, to: p.user_id, via: env.from });
    return confirm();
  }
  if (route?.kind === "server" && route.serverId !== env.from) {
    out.send(route.conn, env, false); // unchanged: original from and sig (PROFILE §3)
    return confirm();
  }
  if (!state.presence.has(p.user_id) && offlineHome(state, p.user_id) === state.config.serverId) {
    const full = enqueue(out, p.user_id, userDeliver(out, p.user_id, dm, ts));
    if (full) return out.error(conn.id, conn.serverId ?? env.from, "UNKNOWN_TYPE", full);
    return confirm();
  }
  out.error(conn.id, conn.serverId ?? env.from, "USER_NOT_FOUND", `user ${p.user_id} is not on this server`);
}
