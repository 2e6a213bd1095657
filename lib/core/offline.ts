/**
 * Store-and-forward (PROFILE §10): frames for offline users are persisted before the sender hears they were
 * accepted, and delivered in order at the user's next hello. DMs to offline remote users go to their last known
 * home server; when that server is unreachable they wait in an outbox until the link returns.
 *
 * The reducer keeps counts only; the frames themselves live in SQLite and the shell reads them when told to.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import type { Out } from "./out.ts";

/** Tell a local sender its frame was accepted (queued or handed on). */
export function ack(out: Out, conn: number, to: string, digestHex: string): void {
  out.send(conn, out.frame("ACK", to, { msg_ref: msgRef(digestHex) }));
}

/**
 * Queue a USER_DELIVER for an offline local user. Returns an error detail when the queue is full.
 */
export function enqueue(out: Out, userId: string, deliver: Envelope<"USER_DELIVER">): string | null {
  const { state } = out;
  const n = state.queued.get(userId) ?? 0;
  if (n >= state.config.limits.maxQueuePerUser) {
    return `the offline queue for ${userId} is full (${state.config.limits.maxQueuePerUser} frames)`;
  }
  state.queued.set(userId, n + 1);
  out.persist({ op: "enqueue", userId, frame: deliver, now: out.now });
  out.log("info", "dm.queued", { to: userId, queued: n + 1 });
  return null;
}

/** Keep a SERVER_DELIVER for a server that is unreachable now. */
export function toOutbox(out: Out, serverId: string, frame: Envelope<"SERVER_DELIVER">): string | null {
  const { state } = out;
  const n = state.outbox.get(serverId) ?? 0;
  if (n >= state.config.limits.maxQueuePerUser * 10) return `the outbox for server ${serverId} is full`;
  state.outbox.set(serverId, n + 1);
  out.persist({ op: "outbox", serverId, frame, now: out.now });
  out.log("info", "dm.outbox", { server: serverId, queued: n + 1 });
  return null;
}

/** Frames kept since before this time have expired (`queueTtlMs`): the shell no longer sends them. */
function expiry(out: Out): number {
  return out.now - out.state.config.limits.queueTtlMs;
}

/** A user came online here: hand over everything queued for them, in order. */
export function deliverQueued(out: Out, conn: number, userId: string): void {
  if (!out.state.queued.get(userId)) return;
  out.state.queued.delete(userId);
  out.effects.push({ kind: "deliverQueued", conn, userId, notBefore: expiry(out) });
}

/**
 * A link to `serverId` is up: send what waited for it. Rows stay until that server ACKs each one, unless it does
 * not speak the ACK extension (`mode` "no", PROFILE §15): then handing them to the link is delivery.
 */
export function flushOutbox(out: Out, conn: number, serverId: string, mode: "yes" | "no" | "unknown"): void {
  // For a server that does not ACK, the count is forgotten at the flush, while the rows go only once the shell
  // has sent them: a link that died under the flush leaves rows the count no longer shows, so every new link to
  // such a server looks in the store (an empty look is cheap).
  if (!out.state.outbox.get(serverId) && mode !== "no") return;
  const confirm = mode !== "no";
  if (!confirm) out.state.outbox.delete(serverId);
  out.effects.push({ kind: "flushOutbox", conn, serverId, confirm, notBefore: expiry(out) });
}

/** Every outbox frame for `serverId` went to its live link, and it will not ACK: forget them. */
export function outboxHanded(out: Out, serverId: string): void {
  if (!out.state.outbox.get(serverId)) return;
  out.state.outbox.delete(serverId);
  out.effects.push({ kind: "outboxHanded", serverId });
}

/** ACK from a linked server: an outbox frame arrived. */
export function outboxAcked(out: Out, serverId: string, msgRef: string): void {
  const n = out.state.outbox.get(serverId);
  if (!n) return;
  if (n <= 1) out.state.outbox.delete(serverId);
  else out.state.outbox.set(serverId, n - 1);
  out.effects.push({ kind: "outboxAcked", serverId, msgRef });
}

/** Remember where a user was last seen (PROFILE §10). */
export function setHome(out: Out, userId: string, serverId: string): void {
  if (out.state.homes.get(userId) === serverId) return;
  out.state.homes.set(userId, serverId);
  out.persist({ op: "setHome", userId, serverId });
}
