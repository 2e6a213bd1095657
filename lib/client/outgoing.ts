/**
 * The client core's messages we send: each one's state (sending, sent, accepted, failed), building the signed, encrypted frame, and sending again after a reconnect what was not accepted.
 *
 * @module
 */
import { type Envelope, serializeEnvelope } from "../protocol/envelope.ts";
import type { MessageType } from "../protocol/messages.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import { canonicalPayloadBytes, dmPreimage, publicPreimage } from "../protocol/preimages.ts";
import {
  type CoreState,
  MAX_OUTGOING,
  type Outgoing,
  RESEND_WINDOW_MS,
  RESTAMP_AFTER_MS,
  type Task,
  utf8,
} from "./core_state.ts";
import { sendKey } from "./trust.ts";
import type { OutgoingMessage, SendState } from "./types.ts";

/** Record a new outgoing message. */
export function newOutgoing(
  s: CoreState,
  kind: "dm" | "public",
  to: string,
  toLabel: string,
  text: string,
  now: number,
  recipientOffline: boolean,
): Outgoing {
  const m: Outgoing = {
    id: `m${++s.msgSeq}`,
    kind,
    to,
    toLabel,
    text,
    ts: now,
    state: "sending",
    resent: false,
    recipientOffline,
    wired: false,
    wiredAt: 0,
  };
  s.outgoing.push(m);
  while (s.outgoing.length > MAX_OUTGOING) {
    const old = s.outgoing.shift()!;
    if (old.ref) s.byRef.delete(old.ref);
  }
  s.emit({ kind: "message", message: view(m) });
  return m;
}

/** The user-facing view of an outgoing message. */
export function view(m: Outgoing): OutgoingMessage {
  const v: OutgoingMessage = {
    id: m.id,
    kind: m.kind,
    to: m.to,
    toLabel: m.toLabel,
    text: m.text,
    ts: m.ts,
    state: m.state,
    resent: m.resent,
    recipientOffline: m.recipientOffline,
  };
  if (m.error) v.error = m.error;
  return v;
}

/** Change an outgoing message's state and report it. */
export function setState(s: CoreState, m: Outgoing, state: SendState): void {
  m.state = state;
  s.emit({ kind: "message", message: view(m) });
}

/** Start encrypting and signing an outgoing message; returns the task's id. */
export function build(s: CoreState, m: Outgoing, encKey: string): number {
  return s.run(buildTask(s, m, encKey), false);
}

/** Encrypt, sign (content_sig and the frame's sig, PROFILE §15) and send or keep for the connection. */
export function* buildTask(s: CoreState, m: Outgoing, encKey: string): Task {
  const ts = m.ts;
  const ciphertext = (yield { op: "encrypt", key: encKey, data: utf8.encode(m.text) }) as string | null;
  if (!ciphertext) {
    m.error = "the recipient's key is not a usable RSA public key";
    setState(s, m, "failed");
    throw new Error(m.error);
  }
  const content_sig = (yield {
    op: "sign",
    data: m.kind === "dm"
      ? dmPreimage({ ciphertext, from: s.userId, to: m.to, ts })
      : publicPreimage({ ciphertext, from: s.userId, ts }),
  }) as string | null;
  const payload = { ciphertext, sender_pub: s.publicKey, content_sig: content_sig ?? "" };
  const bytes = canonicalPayloadBytes(payload); // msg_ref is over the canonical form, whatever we sign
  const [sig, digest] = (yield {
    op: "all",
    ops: [{ op: "sign", data: s.signSpaced ? s.sigPreimage(payload) : bytes }, { op: "sha256", data: bytes }],
  }) as [string | null, Uint8Array];
  if (!content_sig || !sig) {
    m.error = "could not sign the message";
    setState(s, m, "failed");
    throw new Error(m.error);
  }
  const type: MessageType = m.kind === "dm" ? "MSG_DIRECT" : "MSG_PUBLIC_CHANNEL";
  m.frame = serializeEnvelope({ type, from: s.userId, to: m.to, ts, payload, sig } as Envelope);
  if (m.kind === "dm") {
    m.ref = msgRef(digest);
    s.byRef.set(m.ref, m);
  }
  if (s.phase === "online" && s.ready) wire(s, m, s.now);
}

/** Write an outgoing message's frame to the connection. */
export function wire(s: CoreState, m: Outgoing, now: number): void {
  if (!m.frame) return;
  const again = m.wired;
  if (m.kind === "dm" && !again) m.recipientOffline = !s.directory.has(m.to);
  m.wired = true;
  m.wiredAt = now;
  s.send(m.frame);
  if (again) m.resent = true;
  if (m.state === "sending" || again) setState(s, m, "sent");
}

/** On (re)acceptance: send what never left, and again what left but was not accepted (recent ones). */
export function flushOutgoing(s: CoreState, now: number): void {
  for (const m of s.outgoing) {
    if (m.state === "failed" || m.state === "accepted" || !m.frame) continue;
    if (!m.wired) {
      if (now - m.ts > RESTAMP_AFTER_MS) {
        // Too old for the server's freshness check: sign it again with a new ts.
        m.frame = undefined;
        if (m.ref) s.byRef.delete(m.ref);
        m.ts = now;
        let key: string | undefined;
        try {
          key = m.kind === "dm" ? sendKey(s, m.to) : s.channel?.creatorPub;
        } catch (e) {
          m.error = (e as Error).message;
        }
        if (key) s.run(buildTask(s, m, key), false, false);
        else {
          m.error ??= "no key to encrypt it to any more";
          setState(s, m, "failed");
        }
        continue;
      }
      wire(s, m, now);
    } else if (m.state === "sent" && now - m.ts <= RESEND_WINDOW_MS) {
      // It left on a connection that dropped: if the server took it, its seen cache drops this copy, and
      // receivers show a message once (their dedupe keys on sender and ciphertext).
      wire(s, m, now);
    }
  }
}

/**
 * Queue a public-channel message before the channel key arrived (before the first connection, say): it is built
 * when the key share opens the channel ({@linkcode buildForChannel}), then sent once.
 */
export function awaitChannel(s: CoreState, m: Outgoing): number {
  m.awaitChannel = true;
  const ticket = s.ticket();
  s.settle(ticket);
  return ticket;
}

/** The channel key arrived: build the public messages that waited for it (re-dated if they waited long). */
export function buildForChannel(s: CoreState): void {
  if (!s.channel) return;
  for (const m of s.outgoing) {
    if (!m.awaitChannel || m.state !== "sending") continue;
    m.awaitChannel = false;
    if (s.now - m.ts > RESTAMP_AFTER_MS) m.ts = s.now;
    s.run(buildTask(s, m, s.channel.creatorPub), false, false);
  }
}

/** Hello accepted and the snapshot in: who is online is known again, so send what waited. */
export function becomeReady(s: CoreState): void {
  if (s.ready) return;
  s.ready = true;
  flushOutgoing(s, s.now);
  s.emit({ kind: "ready", serverId: s.serverId });
}
