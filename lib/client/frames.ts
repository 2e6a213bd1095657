/**
 * The client core's inbound frames: the server's answer to our hello (every deployed form, PROFILE §15), then
 * each frame checked (the server's signature once it signs) and routed to its handler; ACKs and ERRORs that
 * settle our messages and transfers.
 *
 * @module
 */
import { signatureForms } from "../protocol/canonical_json.ts";
import { type AnyEnvelope, parseFrame } from "../protocol/envelope.ts";
import { decodePublicKey } from "../protocol/keys.ts";
import { type CoreState, isObject, type Task } from "./core_state.ts";
import { onAdvertise } from "./directory.ts";
import { emitFile, onFileChunk, onFileEnd, onFileStart } from "./file_receive.ts";
import { failFile } from "./file_send.ts";
import { onDeliver, onKeyShareRaw, onPublic } from "./inbox.ts";
import { setState } from "./outgoing.ts";
import { readLimits } from "./pacing.ts";
import { keyFingerprint } from "./trust.ts";
import type { ServerPin } from "./types.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";

/** The server refused our hello: stop and report. */
export function refuse(s: CoreState, code: string, detail: string): void {
  s.phase = "refused";
  s.emit({ kind: "refused", code, detail });
}

/** Check the server's hello reply (every deployed form, PROFILE §15). */
export function* acceptHello(s: CoreState, raw: Record<string, unknown>, text: string): Task {
  const p = isObject(raw.payload) ? raw.payload : {};
  const sid = typeof p.server_id === "string" && p.server_id
    ? p.server_id
    : typeof raw.from === "string" && raw.from
    ? raw.from
    : "";
  const spub = typeof p.server_pub === "string" && p.server_pub
    ? p.server_pub
    : typeof p.pubkey === "string" && p.pubkey && raw.type !== "USER_ADVERTISE"
    ? p.pubkey
    : "";
  if (spub && decodePublicKey(spub).ok && typeof raw.sig === "string" && raw.sig) {
    const forms = signatureForms(p);
    const i = (yield {
      op: "verify",
      key: spub,
      preimages: forms.map((f) => f.bytes),
      sig: raw.sig,
    }) as number;
    if (i >= 0) s.noteServerForm(forms[i].form);
    if (i < 0) {
      s.helloChecking = false;
      return refuse(
        s,
        "INVALID_SIG",
        "the server's answer to our hello is signed, but not by the key it presented",
      );
    }
    s.serverSigns = true;
  }
  s.helloChecking = false;
  if (s.phase !== "hello") return;
  if (sid) s.serverId = sid;
  if (spub && decodePublicKey(spub).ok) s.serverPub = spub;
  if (s.serverSigns) pinServer(s, s.serverPub);
  else unsignedHello(s);
  // Our server says in its hello ACK what it holds us to (docs/PROTOCOL.md): pace under that.
  const limits = raw.type === "ACK" ? readLimits(p.limits) : null;
  if (limits) {
    s.limits = limits;
    s.pacer.configure(limits);
  }
  accepted(s, s.now);
  // The accepting frame may carry more than acceptance (a CLIENT_WELCOME, an advert): handle it too.
  if (raw.type !== "ACK") {
    yield* handleText(s, text);
  }
}

/**
 * PROFILE §16: pin our server's key at first contact (per address: the shell keeps the pin), and say loudly when
 * it presents another key (or none) later; channel keys are refused until the user accepts the new key.
 */
export function pinServer(s: CoreState, spub: string): void {
  const pin = s.serverPin;
  s.serverPendingPub = "";
  if (!pin) {
    s.serverTrusted = !!spub;
    if (!spub) return;
    s.serverPin = { serverId: s.serverId, pubkey: spub, fingerprint: keyFingerprint(spub) };
    s.emit({ kind: "serverPin", pin: s.serverPin });
    return;
  }
  if (spub && sameKeyMaterial(pin.pubkey, spub)) {
    s.serverTrusted = true;
    if (s.serverId && pin.serverId !== s.serverId) {
      s.serverPin = { ...pin, serverId: s.serverId };
      s.emit({ kind: "serverPin", pin: s.serverPin });
    }
    return;
  }
  s.serverTrusted = false;
  s.serverPendingPub = spub;
  s.emit({
    kind: "serverKeyChanged",
    serverId: s.serverId,
    oldFingerprint: pin.fingerprint,
    newFingerprint: spub ? keyFingerprint(spub) : "",
  });
}

/**
 * The server's hello reply proved no key (unsigned, or no reply): nothing is pinned until a signed frame; a server
 * pinned earlier is told about, since a server that signed before and does not now may not be that server.
 */
export function unsignedHello(s: CoreState): void {
  s.serverTrusted = false;
  s.serverPendingPub = "";
  if (s.serverPin) {
    s.emit({
      kind: "warning",
      detail:
        `our server did not sign its answer to our hello, although it did before (pinned key ${s.serverPin.fingerprint}): ` +
        "public channel keys are refused until it proves that key",
    });
  }
}

/** The user accepts the key our server presents now in place of the pinned one. */
export function trustServerKey(s: CoreState): ServerPin {
  if (!s.serverPendingPub) throw new Error("no changed server key waits to be accepted");
  s.serverPin = {
    serverId: s.serverId,
    pubkey: s.serverPendingPub,
    fingerprint: keyFingerprint(s.serverPendingPub),
  };
  s.serverPendingPub = "";
  s.serverTrusted = true;
  s.emit({ kind: "serverPin", pin: s.serverPin });
  return s.serverPin;
}

/** The hello was accepted: we are online (the attempt succeeded: the next drop starts the backoff afresh). */
export function accepted(s: CoreState, now: number): void {
  s.phase = "online";
  s.acceptedAt = now;
  s.attempt = 0;
  s.attemptUntil = 0;
}

/** Handle one inbound frame's text. */
export function* handleText(s: CoreState, text: string): Task {
  const r = parseFrame(text, { clientForms: true });
  if (!r.ok) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch { /* reported below */ }
    if (isObject(raw) && raw.type === "PUBLIC_CHANNEL_KEY_SHARE") {
      const signedByServer = raw.from === s.serverId && typeof raw.sig === "string" && !!raw.sig &&
        !!s.serverPub && isObject(raw.payload) &&
        ((yield {
            op: "verify",
            key: s.serverPub,
            preimages: signatureForms(raw.payload).map((f) => f.bytes),
            sig: raw.sig,
          }) as number) >= 0;
      return yield* onKeyShareRaw(s, raw, signedByServer);
    }
    if (isObject(raw) && raw.type === "CLIENT_WELCOME") {
      const p = isObject(raw.payload) ? raw.payload : {};
      if (typeof p.server_id === "string" && p.server_id) s.serverId = p.server_id;
      return;
    }
    if (
      isObject(raw) && typeof raw.type === "string" && r.error.detail.startsWith("unknown message type")
    ) {
      return; // a deployed extension we do not use
    }
    return s.emit({ kind: "warning", detail: `unreadable frame from the server: ${r.error.detail}` });
  }
  const env = r.envelope;
  // PROFILE §15: an advert `{user, …}` whose `user` is its `from` describes the server itself, not a user.
  if (r.signed !== undefined && env.type === "USER_ADVERTISE" && env.payload.user_id === env.from) return;
  let sigOk = false;
  if (env.from === s.serverId) {
    if (env.sig && s.serverPub) {
      const forms = signatureForms(r.signed ?? env.payload); // as sent, not as read (PROFILE §15)
      const i = (yield {
        op: "verify",
        key: s.serverPub,
        preimages: forms.map((f) => f.bytes),
        sig: env.sig,
      }) as number;
      sigOk = i >= 0;
      if (sigOk) {
        s.noteServerForm(forms[i].form);
      }
      if (!sigOk) {
        return s.emit({
          kind: "warning",
          detail: `dropped a ${env.type} whose server signature does not verify`,
        });
      }
      // A server whose hello reply was not signed proves its key with its first signed frame: pin it then.
      if (!s.serverSigns) {
        s.serverSigns = true;
        pinServer(s, s.serverPub);
      }
    } else if (s.serverSigns) {
      return s.emit({ kind: "warning", detail: `dropped an unsigned ${env.type} from our server` });
    }
  }
  yield* dispatch(s, env, sigOk);
}

/** Route a parsed frame to its handler. */
export function* dispatch(s: CoreState, env: AnyEnvelope, sigOk: boolean): Task {
  switch (env.type) {
    case "USER_ADVERTISE":
      return onAdvertise(s, env, sigOk);
    case "USER_REMOVE": {
      const peer = s.directory.get(env.payload.user_id);
      if (peer && peer.serverId === env.payload.server_id) {
        s.directory.delete(peer.userId);
        s.emit({ kind: "left", peer });
      }
      return;
    }
    case "USER_DELIVER":
      return yield* onDeliver(s, env);
    case "PUBLIC_CHANNEL_KEY_SHARE":
      return yield* onKeyShareRaw(s, env as unknown as Record<string, unknown>, sigOk);
    case "MSG_PUBLIC_CHANNEL":
      return yield* onPublic(s, env);
    case "FILE_START":
      return yield* onFileStart(s, env);
    case "FILE_CHUNK":
      return onFileChunk(s, env);
    case "FILE_END":
      return onFileEnd(s, env);
    case "ERROR":
      return onError(s, env.payload.code, env.payload.detail ?? "", errorRefs(env.payload));
    case "ACK":
      return onAck(s, env.payload.msg_ref);
    default:
      return;
  }
}

/** The structured fields of an ERROR (docs/PROTOCOL.md): which file or message of ours it refers to. */
export interface ErrorRefs {
  /** `file_id` of a transfer. */
  fileId?: string;
  /** `msg_ref` of a frame of ours (PROFILE §10). */
  msgRef?: string;
}

/** Read `file_id` and `msg_ref` of an ERROR payload (absent, or not a short string: not there). */
export function errorRefs(payload: unknown): ErrorRefs {
  const p = isObject(payload) ? payload : {};
  const str = (v: unknown) => typeof v === "string" && v.length > 0 && v.length <= 256 ? v : undefined;
  const refs: ErrorRefs = {};
  const fileId = str(p.file_id), msgRef = str(p.msg_ref);
  if (fileId) refs.fileId = fileId;
  if (msgRef) refs.msgRef = msgRef;
  return refs;
}

/** The server ACKed one of our frames (by msg_ref): the event names our message or file. */
export function onAck(s: CoreState, msgRef: string): void {
  const m = s.byRef.get(msgRef);
  if (m) {
    s.byRef.delete(msgRef);
    if (m.state !== "accepted") setState(s, m, "accepted");
    s.emit({ kind: "ack", msgRef, what: `message to ${m.toLabel}`, messageId: m.id });
    return;
  }
  for (const f of s.sendingFiles.values()) {
    if (f.ref === msgRef && f.state === "ended") {
      f.state = "accepted";
      s.emit({ kind: "ack", msgRef, what: `file ${f.name} to ${f.toLabel}`, fileId: f.fileId });
      return;
    }
  }
}

/**
 * An ERROR from the server: fail the message or transfer it names. The structured fields (`file_id`, `msg_ref`)
 * are matched first; servers of other implementations send prose only, searched for file ids and names then.
 */
export function onError(s: CoreState, code: string, detail: string, refs: ErrorRefs = {}): void {
  const why = `${code}: ${detail}`;
  if (refs.fileId !== undefined) {
    const f = s.sendingFiles.get(refs.fileId);
    if (f) {
      // Stopped once; the server's later refusals of its chunks (already on the wire) are not news.
      if (f.state === "sending" || f.state === "ended") failFile(s, f, why);
      return;
    }
    for (const [k, t] of s.incoming) {
      if (t.fileId !== refs.fileId) continue;
      s.incoming.delete(k);
      return emitFile(s, t, null, `the server dropped it: ${detail}`);
    }
  }
  if (refs.msgRef !== undefined) {
    const m = s.byRef.get(refs.msgRef);
    if (m) {
      m.error = why;
      s.byRef.delete(refs.msgRef);
      return setState(s, m, "failed");
    }
    for (const f of s.sendingFiles.values()) {
      if (f.ref !== refs.msgRef) continue;
      if (f.state === "ended") failFile(s, f, why);
      return;
    }
  }
  if (refs.fileId === undefined && refs.msgRef === undefined) return onProseError(s, code, detail);
  s.emit({ kind: "error", code, detail });
}

/** An ERROR without structured fields (PROFILE §15: other servers): find what it names in its prose. */
function onProseError(s: CoreState, code: string, detail: string): void {
  // A refusal that names one of our transfers stops it, once; the server's later refusals of its chunks
  // (one per chunk already on the wire) are not news.
  for (const f of s.sendingFiles.values()) {
    const named = detail.includes(f.fileId) ||
      (f.state === "sending" && detail.includes(`"${f.name.slice(0, 64)}"`)) ||
      (f.state === "sending" && code === "USER_NOT_FOUND" && f.to !== "public" && detail.includes(f.to));
    if (!named) continue;
    if (f.state === "sending" || f.state === "ended") failFile(s, f, `${code}: ${detail}`);
    return;
  }
  // The server dropped a transfer coming to us (it tells the recipient too): end it here, once.
  for (const [k, t] of s.incoming) {
    if (!detail.includes(t.fileId)) continue;
    s.incoming.delete(k);
    return emitFile(s, t, null, `the server dropped it: ${detail}`);
  }
  if (code === "USER_NOT_FOUND" || code === "UNKNOWN_TYPE") {
    // Refusals come right after the frame they refuse: the latest DM to that user still only "sent".
    const m = s.outgoing.findLast((o) => o.kind === "dm" && o.state === "sent" && detail.includes(o.to));
    if (m) {
      m.error = `${code}: ${detail}`;
      if (m.ref) s.byRef.delete(m.ref);
      return setState(s, m, "failed");
    }
  }
  s.emit({ kind: "error", code, detail });
}
