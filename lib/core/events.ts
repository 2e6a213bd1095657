/**
 * The reducer's events other than frames and ticks: connections opening and closing, dials failing, oversize
 * frames, undelivered DMs. The clock's tick is in timers.ts.
 *
 * @module
 */
import { dialFailed } from "./join.ts";
import { dialConnected, linkDown } from "./links.ts";
import type { Out } from "./out.ts";
import { deliverQueued, enqueue } from "./offline.ts";
import { userLeft } from "./presence.ts";
import type { Envelope } from "../protocol/envelope.ts";
import type { Conn, Event } from "./types.ts";

type EventOf<K extends Event["kind"]> = Extract<Event, { kind: K }>;

function newConn(id: number, addr: string, now: number, burst: number): Conn {
  return {
    id,
    addr,
    openedAt: now,
    role: "pending",
    strikes: 0,
    tokens: burst,
    refilledAt: now,
    throttled: false,
    pemDialect: false,
    lastSeen: now,
    lastSent: now,
  };
}

/** A connection opened: one we dialed says who we are; an inbound one is counted against its address. */
export function onConnected(out: Out, event: EventOf<"connected">): void {
  const { state, now } = out;
  const conn = newConn(event.conn, event.addr, now, state.config.limits.rateBurst);
  state.conns.set(event.conn, conn);
  if (event.dial !== undefined) {
    const intent = state.dials.get(event.dial);
    state.dials.delete(event.dial);
    if (intent) dialConnected(out, conn, intent);
    else out.close(event.conn, 1000, "unexpected dial");
    return;
  }
  const n = (state.connsPerAddr.get(event.addr) ?? 0) + 1;
  state.connsPerAddr.set(event.addr, n);
  if (n > state.config.limits.maxConnsPerAddr) {
    out.close(
      event.conn,
      1008,
      `too many connections from one address (limit ${state.config.limits.maxConnsPerAddr})`,
    );
  }
}

/** A dial never connected (refused, or not open within `dialTimeoutMs`). */
export function onDialFailed(out: Out, event: EventOf<"dialFailed">): void {
  const intent = out.state.dials.get(event.token);
  out.state.dials.delete(event.token);
  if (intent) dialFailed(out, intent, event.reason);
}

/** A frame over the size limit: the connection is closed unread. */
export function onOversize(out: Out, event: EventOf<"oversize">): void {
  out.log("info", "frame.too_large", { conn: event.conn, bytes: event.bytes });
  out.close(
    event.conn,
    1009,
    `frame of ${event.bytes} bytes exceeds the ${out.state.config.limits.maxFrameBytes}-byte limit`,
  );
}

/**
 * DMs that never reached a user's socket (it closed or was cut first) are not lost: they go to the user's
 * connection if the user is back on another one, else to the offline queue (PROFILE §10), delivered at the next
 * hello. Never back to the connection that failed them.
 */
export function onUndelivered(out: Out, event: EventOf<"undelivered">): void {
  const { state } = out;
  const { userId } = event;
  if (!state.users.has(userId)) return;
  const live = state.localUsers.get(userId);
  const elsewhere = live !== undefined && live !== event.conn ? live : undefined;
  if (event.stored) {
    state.queued.set(userId, (state.queued.get(userId) ?? 0) + event.stored);
    out.log("info", "dm.requeued", { to: userId, frames: event.stored, what: "queue" });
    if (elsewhere !== undefined) deliverQueued(out, elsewhere, userId);
  }
  const f = event.frame;
  if (!f || f.type !== "USER_DELIVER" || f.to !== userId) return;
  if (elsewhere !== undefined) {
    out.send(elsewhere, f);
    return;
  }
  const full = enqueue(out, userId, f as Envelope<"USER_DELIVER">);
  if (full) out.log("warn", "dm.dropped", { to: userId, reason: full });
  else out.log("info", "dm.requeued", { to: userId, frames: 1, what: "live" });
}

/** A connection closed: its user leaves, its link goes down, or its dial failed. */
export function onClosed(out: Out, event: EventOf<"closed">): void {
  const { state } = out;
  const conn = state.conns.get(event.conn);
  if (!conn) return;
  state.conns.delete(event.conn);
  if (!conn.dial) {
    const n = (state.connsPerAddr.get(conn.addr) ?? 1) - 1;
    if (n <= 0) state.connsPerAddr.delete(conn.addr);
    else state.connsPerAddr.set(conn.addr, n);
  }
  if (conn.userId && state.localUsers.get(conn.userId) === conn.id) userLeft(out, conn.userId);
  if (conn.role === "server") linkDown(out, conn, "closed");
  else if (conn.dial) {
    dialFailed(
      out,
      conn.dial,
      conn.openedAt === Infinity ? "no SERVER_WELCOME" : "closed before the peer's first frame",
      conn.dial.purpose === "link",
    );
  }
}
