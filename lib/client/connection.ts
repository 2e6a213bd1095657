/**
 * The client core's connection policy, sans-IO: when to open a socket (start, reconnect with backoff, retry now),
 * when to give an attempt up, the hello (signed, with ts and nonce), the 3 s silence rule and the snapshot wait,
 * what a close ends, and the next deadline the shell arms one timer for. The shell reports what its socket did
 * (`opened`, a frame, `closed`) and the time; the core answers with `open` and `close` outputs.
 *
 * @module
 */
import type { PayloadOf } from "../protocol/messages.ts";
import { SOFTWARE } from "../protocol/version.ts";
import {
  type CoreState,
  HELLO_SILENCE_MS,
  isObject,
  MAX_FRAME_CHARS,
  SNAPSHOT_WAIT_MS,
  type Task,
} from "./core_state.ts";
import { emitFile } from "./file_receive.ts";
import { advanceFiles, failFile, filesWaiting } from "./file_send.ts";
import { accepted, acceptHello, handleText, refuse, unsignedHello } from "./frames.ts";
import { becomeReady } from "./outgoing.ts";

/**
 * The close code a server uses when a newer session of the same identity took over this one (PROFILE §16); the
 * client does not reconnect after it (that would take the session back, and so on).
 */
export const TAKEN_OVER_CLOSE = 4001;

/** Ask the shell for a socket now; the attempt is given up if its hello is not accepted in time. */
function openNow(s: CoreState): void {
  s.socket = true;
  s.reconnectAt = 0;
  s.gaveUp = "";
  s.attemptUntil = s.now + s.connectTimeoutMs;
  s.out.push({ kind: "open" });
}

/** Be connected from now on: open a socket unless one is open or opening (a refused identity may try again). */
export function start(s: CoreState): void {
  s.wanted = true;
  if (s.phase === "refused" && !s.socket) s.phase = "offline";
  if (!s.socket) openNow(s);
}

/** Stop connecting: no reconnect, no attempt deadline (the shell closes its socket). */
export function stop(s: CoreState): void {
  s.wanted = false;
  s.reconnectAt = 0;
  s.attemptUntil = 0;
}

/** While waiting to reconnect: try now. False when no reconnect was waiting. */
export function retryNow(s: CoreState): boolean {
  if (!s.wanted || s.socket || s.reconnectAt === 0) return false;
  openNow(s);
  return true;
}

/** The socket opened: say hello (signed, with `ts` and a fresh `nonce` from the shell). */
export function opened(s: CoreState, nonce: string): void {
  const now = s.now;
  s.socket = true;
  s.phase = "hello";
  s.ready = false;
  s.serverSigns = false;
  s.helloChecking = false;
  s.serverTrusted = false;
  s.serverPendingPub = "";
  s.helloAt = now;
  s.inbound.length = 0;
  s.pacer.reset(now);
  const payload: PayloadOf<"USER_HELLO"> = {
    client: SOFTWARE,
    pubkey: s.publicKey,
    enc_pubkey: s.publicKey,
    ts: now,
    nonce,
  };
  if (s.displayName) payload.meta = { display_name: s.displayName };
  const to = s.serverId || "*";
  s.run(
    (function* (): Task {
      const sig = (yield { op: "sign", data: s.sigPreimage(payload) }) as string | null;
      if (s.phase !== "hello") return;
      s.emitSend({ type: "USER_HELLO", from: s.userId, to, ts: now, payload, sig: sig ?? "" });
    })(),
    false,
    false,
  );
}

/** A text frame arrived. */
export function frame(s: CoreState, text: string): void {
  if (s.phase === "offline" || s.phase === "refused") return;
  if (text.length > MAX_FRAME_CHARS) {
    return s.emit({
      kind: "warning",
      detail: `ignored a frame of ${text.length} characters from the server`,
    });
  }
  if (s.phase === "hello" && !s.helloChecking) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      return s.emit({ kind: "warning", detail: "unreadable frame from the server during the hello" });
    }
    if (!isObject(raw)) return;
    if (raw.type === "ERROR") {
      const p = isObject(raw.payload) ? raw.payload : {};
      return refuse(
        s,
        typeof p.code === "string" ? p.code : "ERROR",
        typeof p.detail === "string" ? p.detail : typeof p.message === "string" ? p.message : "",
      );
    }
    s.helloChecking = true;
    const rawObj = raw;
    s.enqueue(() => acceptHello(s, rawObj, text));
    return;
  }
  s.enqueue(() => handleText(s, text));
}

/** Time passes: whatever deadline is due (see {@linkcode nextDeadline}) is acted on. */
export function tick(s: CoreState): void {
  const now = s.now;
  if (s.phase === "hello" && !s.helloChecking && now - s.helloAt >= HELLO_SILENCE_MS) {
    unsignedHello(s);
    accepted(s, now);
    becomeReady(s); // a server that says nothing sends no snapshot either
  }
  if (s.phase === "online" && !s.ready && now - s.acceptedAt >= SNAPSHOT_WAIT_MS) becomeReady(s);
  if (s.attemptUntil !== 0 && now >= s.attemptUntil) {
    s.attemptUntil = 0;
    if (s.socket && s.phase !== "online") {
      s.gaveUp = `no answer within ${s.connectTimeoutMs / 1000} s`;
      s.out.push({ kind: "close", code: 1000, reason: s.gaveUp });
    }
  }
  if (s.reconnectAt !== 0 && now >= s.reconnectAt) {
    s.reconnectAt = 0;
    if (s.wanted && !s.socket) openNow(s);
  }
  for (const t of s.pacer.release(now)) s.out.push({ kind: "send", text: t });
  if (s.phase === "online") advanceFiles(s);
}

/** The next time {@linkcode tick} has something to do (undefined: nothing planned). */
export function nextDeadline(s: CoreState): number | undefined {
  let d = Infinity;
  if (s.phase === "hello" && !s.helloChecking) d = Math.min(d, s.helloAt + HELLO_SILENCE_MS);
  if (s.phase === "online" && !s.ready) d = Math.min(d, s.acceptedAt + SNAPSHOT_WAIT_MS);
  if (s.attemptUntil !== 0) d = Math.min(d, s.attemptUntil);
  if (s.reconnectAt !== 0) d = Math.min(d, s.reconnectAt);
  if (s.socket && (s.pacer.queue.length > 0 || (s.phase === "online" && filesWaiting(s)))) {
    d = Math.min(d, s.pacer.nextTokenAt());
  }
  return d === Infinity ? undefined : d;
}

/**
 * The socket closed (or never opened). Incoming transfers are lost; our messages not accepted are sent again on
 * reconnect, which is planned with backoff (1 s doubling to 30 s by default) unless we were refused, stopped, or
 * a newer session of ours took over. `why` says in words what happened (for the `reconnecting` event).
 */
export function closed(s: CoreState, code: number, reason: string, why: string): void {
  const was = s.phase;
  s.socket = false;
  s.attemptUntil = 0;
  s.pacer.reset(s.now);
  if (s.gaveUp && !why.endsWith(s.gaveUp)) why = `${why}: ${s.gaveUp}`;
  s.gaveUp = "";
  if (was !== "offline") {
    s.phase = was === "refused" ? "refused" : "offline";
    s.ready = false;
    s.helloChecking = false;
    s.inbound.length = 0;
    s.directory.clear();
    for (const t of s.incoming.values()) {
      emitFile(s, t, null, "the connection was lost before the file was complete");
    }
    s.incoming.clear();
    for (const f of s.sendingFiles.values()) {
      if (f.state === "sending" || f.state === "ended") failFile(s, f, "the connection was lost");
    }
    if (was === "refused") return;
    if (code === TAKEN_OVER_CLOSE) {
      // A newer session of this identity (signed with our key) took over: reconnecting would take it back.
      return refuse(
        s,
        "TAKEN_OVER",
        "signed in elsewhere: a newer session of this identity took over this one" +
          (reason ? ` (${reason})` : ""),
      );
    }
    s.emit({ kind: "closed", code, reason });
  }
  if (!s.wanted || !s.reconnect) return;
  const inMs = Math.min(s.maxBackoffMs, s.backoffMs * 2 ** s.attempt);
  s.attempt++;
  s.reconnectAt = s.now + inMs;
  s.emit({ kind: "reconnecting", inMs, attempt: s.attempt, error: why });
}
