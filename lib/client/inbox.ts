/**
 * The client core's received messages: DMs and public-channel posts (verify, decrypt, report) and the public channel's key share.
 *
 * @module
 */
import { decodeBase64Url } from "../protocol/base64url.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { dmPreimageVariants, keySharePreimage, publicPreimageVariants } from "../protocol/preimages.ts";
import { type CoreState, isObject, REFUSAL_RE, strictUtf8, type Task } from "./core_state.ts";
import { failFile } from "./file_send.ts";
import { buildForChannel } from "./outgoing.ts";
import { judgeSeen, keyFingerprint, learnKey, rememberSeen, seenKey } from "./trust.ts";
import type { CryptoOp, TextMessageEvent } from "./types.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { derivesId } from "../protocol/user_id.ts";

/**
 * The text of a received message: the decrypted bytes as strict UTF-8, or, when nothing was decrypted, a
 * "ciphertext" that is plain text (then `unencrypted`); null when neither.
 */
export function messageText(
  plain: Uint8Array | null,
  ciphertext: string,
): { text: string; unencrypted: boolean } | null {
  if (plain) {
    try {
      return { text: strictUtf8.decode(plain), unencrypted: false };
    } catch {
      return null;
    }
  }
  const text = plainTextOf(ciphertext);
  return text === null ? null : { text, unencrypted: true };
}

/** Text that a "ciphertext" holds in the clear, if it is plain text (a deployed client sends that), else null. */
export function plainTextOf(ciphertext: string): string | null {
  const printable = (s: string) =>
    s.length > 0 && s.length <= 65536 &&
    // deno-lint-ignore no-control-regex
    !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffd]/.test(s);
  const bytes = decodeBase64Url(ciphertext);
  if (bytes) {
    try {
      const s = strictUtf8.decode(bytes);
      if (printable(s)) return s;
    } catch { /* not UTF-8 */ }
    return null;
  }
  return printable(ciphertext) ? ciphertext : null;
}

/**
 * The ts a DM's content_sig covers: `payload.original_ts` when the server stamped the envelope with the delivery
 * time (PROFILE §15; null means the server lost it, and the envelope ts is all there is), else the envelope ts.
 */
function originalTs(env: Envelope<"USER_DELIVER">): number {
  const o = env.payload.original_ts;
  return typeof o === "number" ? o : env.ts;
}

/** A delivered DM (or file frame inside one): verify, decrypt, report once (PROFILE §16 dedupe). */
export function* onDeliver(s: CoreState, env: Envelope<"USER_DELIVER">): Task {
  const p = env.payload;
  const key = seenKey("dm", p.sender, p.ciphertext);
  if (s.seen.get(key)?.verified) return; // a copy of what was shown: nothing to decrypt
  const [plain, idx] = (yield {
    op: "all",
    ops: [
      { op: "decrypt", with: "user", ciphertext: p.ciphertext },
      {
        op: "verify",
        key: p.sender_pub,
        preimages: dmPreimageVariants({
          ciphertext: p.ciphertext,
          from: p.sender,
          to: s.userId,
          ts: originalTs(env),
        }),
        sig: p.content_sig,
      },
    ],
  }) as [Uint8Array | null, number];
  const body = messageText(plain, p.ciphertext);
  if (!body) {
    return s.emit({
      kind: "warning",
      detail: `a message from ${s.labelOf(p.sender)} could not be decrypted`,
    });
  }
  const { text } = body;
  const { verified, warning } = senderTrust(s, p.sender, p.sender_pub, idx >= 0);
  const ts = originalTs(env);
  if (!admit(s, key, ts, verified, `a message from ${s.labelOf(p.sender)}`)) return;
  const refusal = REFUSAL_RE.exec(text);
  if (refusal && verified) {
    const f = s.sendingFiles.get(refusal[2]);
    if (f && f.to === p.sender) {
      if (f.state !== "failed") failFile(s, f, `${f.toLabel} refused it: ${refusal[3]}`);
      return;
    }
  }
  s.emit({ kind: "dm", ...textEvent(s, p.sender, body, ts, verified, warning) });
}

/**
 * Is a message with a good or bad signature by `senderPub` the sender's? Only when the key is the one pinned for
 * them; without a pin, a key that derives the sender's id is pinned now (verified by construction), any other is
 * taken with a warning (not pinned: presence pins keys).
 */
function senderTrust(
  s: CoreState,
  sender: string,
  senderPub: string,
  sigOk: boolean,
): { verified: boolean; warning?: string } {
  if (!sigOk) return { verified: false, warning: s.senderKeyWarning(sender, senderPub) };
  const pinned = s.contacts.get(sender);
  if (!pinned && sender !== s.userId && derivesId(senderPub, sender)) {
    const fingerprint = keyFingerprint(senderPub);
    learnKey(s, { userId: sender, pubkey: senderPub, fingerprint, name: s.nameOf(sender), serverId: "" });
    return { verified: true };
  }
  if (
    pinned && !pinned.pending && !sameKeyMaterial(pinned.pubkey, senderPub) && derivesId(senderPub, sender)
  ) {
    // A deriving key beats a pin that does not derive (announced as a resolved conflict).
    learnKey(s, {
      userId: sender,
      pubkey: senderPub,
      fingerprint: keyFingerprint(senderPub),
      name: pinned.name,
      serverId: pinned.serverId,
    });
  }
  const warning = s.senderKeyWarning(sender, senderPub);
  if (warning) return { verified: false, warning };
  if (!pinned && sender !== s.userId && !s.directory.get(sender)?.pubkey) {
    return { verified: true, warning: "first message from a key not seen in presence yet (not pinned)" };
  }
  return { verified: true };
}

/** Apply the dedupe to a message about to be shown; false when it must not be shown. */
function admit(s: CoreState, key: string, ts: number, verified: boolean, what: string): boolean {
  const verdict = judgeSeen(s, key, ts, verified);
  if (verdict === "again") return false;
  if (verdict === "old") {
    s.emit({
      kind: "warning",
      detail: `dropped ${what} dated ${
        new Date(ts).toISOString()
      }: older than every message this client still remembers, so it may be a replay`,
    });
    return false;
  }
  rememberSeen(s, key, ts, verified);
  return true;
}

/** The fields of a received text message event. */
export function textEvent(
  s: CoreState,
  from: string,
  body: { text: string; unencrypted: boolean },
  ts: number,
  verified: boolean,
  warning: string | undefined,
): TextMessageEvent {
  const e: TextMessageEvent = {
    from,
    fromName: s.nameOf(from),
    fromLabel: s.labelOf(from),
    text: body.text,
    ts,
    verified,
  };
  if (body.unencrypted) e.unencrypted = true;
  if (warning) e.warning = warning;
  return e;
}

/**
 * A public-channel key share: accepted only from our own server's frame signed with its pinned key (PROFILE §16);
 * then the creator's signature is checked, the key unwrapped, and its creator key pinned (a change is announced).
 * `serverSigned`: the frame came from our server and its signature verified with the key of this connection.
 */
export function* onKeyShareRaw(s: CoreState, raw: Record<string, unknown>, serverSigned: boolean): Task {
  const p = isObject(raw.payload) ? raw.payload : {};
  const creatorPub = typeof p.creator_pub === "string" ? p.creator_pub : "";
  const shares = Array.isArray(p.shares) ? p.shares : [];
  const mine = shares.find((x) => isObject(x) && x.member === s.userId) as
    | Record<string, unknown>
    | undefined;
  if (!mine || !creatorPub) return;
  if (!serverSigned || raw.from !== s.serverId || !s.serverTrusted) {
    return s.emit({
      kind: "warning",
      detail: !serverSigned || raw.from !== s.serverId
        ? `refused a public channel key share that is not signed by our server (from ${
          typeof raw.from === "string" ? raw.from.slice(0, 64) : "?"
        })`
        : "refused a public channel key share: our server's key is not the pinned one (see the warning above)",
    });
  }
  const wrapped = [mine.wrapped_public_channel_key, mine.wrapped_key, mine.wrapped].find((w) =>
    typeof w === "string" && w
  ) as string | undefined;
  if (!wrapped) return;
  const sig = typeof p.content_sig === "string" ? p.content_sig : "";
  if (
    !sig ||
    ((yield {
        op: "verify",
        key: creatorPub,
        preimages: [keySharePreimage(shares, creatorPub)],
        sig,
      }) as number) <
      0
  ) {
    return s.emit({
      kind: "warning",
      detail: "ignored a public channel key share whose signature does not verify",
    });
  }
  const ok = (yield { op: "openChannelKey", wrapped, creatorPub }) as boolean;
  if (!ok) {
    return s.emit({ kind: "warning", detail: "the public channel key share could not be opened" });
  }
  const fresh = s.channel?.creatorPub !== creatorPub;
  s.channel = { creatorPub };
  const pin = s.serverPin;
  if (pin && (!pin.channelCreatorPub || !sameKeyMaterial(pin.channelCreatorPub, creatorPub))) {
    const before = pin.channelCreatorPub;
    s.serverPin = { ...pin, channelCreatorPub: creatorPub };
    s.emit({ kind: "serverPin", pin: s.serverPin });
    if (before) {
      s.emit({
        kind: "channelKeyChanged",
        oldFingerprint: keyFingerprint(before),
        newFingerprint: keyFingerprint(creatorPub),
      });
    }
  }
  if (fresh) s.emit({ kind: "channel", version: 0 });
  buildForChannel(s);
}

/** A public-channel message: verify, decrypt, report once. */
export function* onPublic(s: CoreState, env: Envelope<"MSG_PUBLIC_CHANNEL">): Task {
  if (env.from === s.userId) return;
  const p = env.payload;
  const key = seenKey("all", env.from, p.ciphertext);
  if (s.seen.get(key)?.verified) return;
  const forms = publicPreimageVariants({ ciphertext: p.ciphertext, from: env.from, ts: env.ts });
  const verify: CryptoOp = { op: "verify", key: p.sender_pub, preimages: forms, sig: p.content_sig };
  let plain: Uint8Array | null = null;
  let idx: number;
  if (s.channel) {
    [plain, idx] = (yield {
      op: "all",
      ops: [{ op: "decrypt", with: "channel", ciphertext: p.ciphertext }, verify],
    }) as [Uint8Array | null, number];
  } else idx = (yield verify) as number;
  const body = messageText(plain, p.ciphertext);
  if (!body) {
    return s.emit({
      kind: "warning",
      detail: s.channel
        ? `a public message from ${s.labelOf(env.from)} could not be decrypted`
        : `a public message from ${s.labelOf(env.from)} arrived before the channel key`,
    });
  }
  const { verified, warning } = senderTrust(s, env.from, p.sender_pub, idx >= 0);
  if (!admit(s, key, env.ts, verified, `a public message from ${s.labelOf(env.from)}`)) return;
  s.emit({ kind: "public", ...textEvent(s, env.from, body, env.ts, verified, warning) });
}
