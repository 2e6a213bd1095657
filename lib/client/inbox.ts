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
import type { CryptoOp, TextMessageEvent } from "./types.ts";

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

/** A delivered DM (or file frame inside one): verify, decrypt, report. */
export function* onDeliver(s: CoreState, env: Envelope<"USER_DELIVER">): Task {
  const p = env.payload;
  if (!s.firstSight(`dm|${p.sender}|${env.ts}|${p.content_sig}`)) return;
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
  const warning = s.senderKeyWarning(p.sender, p.sender_pub);
  const verified = idx >= 0 && !warning;
  const refusal = REFUSAL_RE.exec(text);
  if (refusal && verified) {
    const f = s.sendingFiles.get(refusal[2]);
    if (f && f.to === p.sender) {
      if (f.state !== "failed") failFile(s, f, `${f.toLabel} refused it: ${refusal[3]}`);
      return;
    }
  }
  s.emit({ kind: "dm", ...textEvent(s, p.sender, body, env.ts, verified, warning) });
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

/** A public-channel key share: unwrap the channel key. */
export function* onKeyShareRaw(s: CoreState, raw: Record<string, unknown>): Task {
  const p = isObject(raw.payload) ? raw.payload : {};
  const creatorPub = typeof p.creator_pub === "string" ? p.creator_pub : "";
  const shares = Array.isArray(p.shares) ? p.shares : [];
  const mine = shares.find((x) => isObject(x) && x.member === s.userId) as
    | Record<string, unknown>
    | undefined;
  if (!mine || !creatorPub) return;
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
  if (fresh) s.emit({ kind: "channel", version: 0 });
}

/** A public-channel message: verify, decrypt, report. */
export function* onPublic(s: CoreState, env: Envelope<"MSG_PUBLIC_CHANNEL">): Task {
  if (env.from === s.userId) return;
  const p = env.payload;
  if (!s.firstSight(`all|${env.from}|${env.ts}|${p.content_sig}`)) return;
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
  const warning = s.senderKeyWarning(env.from, p.sender_pub);
  s.emit({ kind: "public", ...textEvent(s, env.from, body, env.ts, idx >= 0 && !warning, warning) });
}
