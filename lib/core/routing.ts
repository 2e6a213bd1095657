/**
 * Direct messages (PROFILE §7) and their delivery.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import type { Out } from "./out.ts";

/** MSG_DIRECT from a local user: deliver to a local recipient, or say USER_NOT_FOUND. */
export function direct(out: Out, conn: number, env: Envelope<"MSG_DIRECT">): void {
  const { state } = out;
  const recipientConn = state.localUsers.get(env.to);
  if (recipientConn !== undefined) {
    const deliver = out.frame("USER_DELIVER", env.to, {
      ciphertext: env.payload.ciphertext,
      sender: env.from,
      sender_pub: env.payload.sender_pub,
      content_sig: env.payload.content_sig,
    }, env.ts);
    out.send(recipientConn, deliver);
    out.log("debug", "dm.delivered", { from: env.from, to: env.to });
    return;
  }
  const known = state.users.has(env.to);
  out.error(
    conn,
    env.from,
    "USER_NOT_FOUND",
    known ? `user ${env.to} is not online` : `user ${env.to} is not known on this network`,
  );
}
