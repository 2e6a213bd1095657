/**
 * The inbound pipeline of one connection: size check, parse, canonical text and digest, signature verification
 * (started at once, concurrently with earlier frames, and checked again in the frame's turn when an earlier
 * frame changed the key), load shedding beyond the burst or past {@linkcode INFLIGHT_BYTES} of frames in flight,
 * and arrival order (a promise chain per connection).
 * A bug while reading one frame refuses that frame; the process goes on.
 *
 * @example
 * ```ts ignore
 * socket.onMessage = (data) => onFrame(ctx, conn, chain, data);
 * ```
 * @module
 */
import type { Event, Limits, State } from "../core/types.ts";
import { expectedKey } from "../core/verify.ts";
import { sha256Hex, verifyAny } from "../crypto/rsa.ts";
import { canonicalJsonResult, type PreimageForm, signatureForms } from "../protocol/canonical_json.ts";
import { parseFrame, type ParseResult } from "../protocol/envelope.ts";
import type { Counters } from "./counters.ts";
import type { Logger } from "./log.ts";
import { type InboundConn, INFLIGHT_BYTES } from "./connection.ts";

export { type InboundConn, INFLIGHT_BYTES };

/** What the pipeline needs from the node. */
export interface InboundContext {
  /** The node's limits (frame size, burst). */
  limits: Limits;
  /** Counters for `/metrics`. */
  counters: Counters;
  /** The reducer's state now (for the key a frame must be signed with). */
  state(): State;
  /** Hand an event to the reducer. */
  dispatch(ev: Event): void;
  /** Where failures are logged. */
  log: Logger;
  /** The clock (default `Date.now`). */
  now?: () => number;
  /** SHA-256 of a canonical text, hex (default: WebCrypto). */
  digest?: (text: string) => Promise<string>;
  /**
   * Whether `sig` is `key`'s signature over `payload` in any deployed form (default: RSA-PSS, PROFILE §15): false,
   * or true or the form that verified.
   */
  verify?: (key: string, payload: unknown, sig: string) => Promise<boolean | PreimageForm>;
  /** A signature by `key` verified in `form` (PROFILE §15: the shell signs that peer's frames in its form). */
  verifiedForm?: (key: string, form: PreimageForm) => void;
  /** A fresh unique id for the reducer (default `crypto.randomUUID`). */
  fresh?: () => string;
}

/** RSA-PSS over any of the payload's deployed preimages: the form that verified, or false. */
function verifyPss(key: string, payload: unknown, sig: string): Promise<false | PreimageForm> {
  const forms = signatureForms(payload);
  return verifyAny(key, forms.map((f) => f.bytes), sig).then((i) => i >= 0 && forms[i].form);
}

/** The canonical text of a payload without its `fwd_ts` (the replay digest, PROFILE §16). */
export function withoutFwdTs(payload: object): string {
  const { fwd_ts: _f, ...rest } = payload as Record<string, unknown>;
  const c = canonicalJsonResult(rest);
  return c.ok ? c.text : "";
}

/** Take one frame from a connection: check, parse and verify it, and hand it to the reducer in arrival order. */
export function onFrame(ctx: InboundContext, conn: number, s: InboundConn, data: unknown): void {
  const { dispatch, log } = ctx;
  const now = ctx.now ?? Date.now;
  try {
    receive(ctx, conn, s, data);
  } catch (e) {
    // A bug in the synchronous part of receiving one frame refuses that frame; the process goes on.
    log.error("frame.failed", { conn, error: String(e) });
    const parsed: ParseResult = {
      ok: false,
      error: { code: "UNKNOWN_TYPE", detail: "the node failed while reading this frame; it was refused" },
    };
    s.inOrder(() => dispatch({ kind: "frame", conn, now: now(), parsed, digest: "", sig: "absent" }));
  }
}

function receive(ctx: InboundContext, conn: number, s: InboundConn, data: unknown): void {
  const { dispatch, log, limits, counters: metrics } = ctx;
  const now = ctx.now ?? Date.now;
  const digestOf = ctx.digest ?? sha256Hex;
  const verifySig = ctx.verify ?? verifyPss;
  const fresh = ctx.fresh ?? (() => crypto.randomUUID());
  // Frames that arrive after we decided to close are not read.
  if (s.skipping) return;
  const refuse = (detail: string) => {
    const parsed: ParseResult = { ok: false, error: { code: "UNKNOWN_TYPE", detail } };
    s.inOrder(() => dispatch({ kind: "frame", conn, now: now(), parsed, digest: "", sig: "absent" }));
  };
  if (typeof data !== "string") {
    return refuse("binary frames are not supported: send one JSON object as text");
  }
  const bytes = data.length * 3 > limits.maxFrameBytes ? new TextEncoder().encode(data).length : data.length;
  if (bytes > limits.maxFrameBytes) {
    s.inOrder(() => dispatch({ kind: "oversize", conn, now: now(), bytes }));
    return;
  }
  // Load shedding before any work: a peer that sends faster than we verify gets its excess refused unread (each
  // refusal is a strike, so a flood ends with the connection closed), instead of costing an RSA verification
  // per frame or unbounded memory. Bounded by count and by bytes (the connection holds the bounds).
  const over = s.admit(bytes);
  if (over) {
    metrics.shed++;
    log.warn("frame.shed", { conn, inflight: s.inflight, inflight_bytes: s.inflightBytes, bytes });
    return refuse(
      over === "count"
        ? `too many frames in flight (more than ${limits.rateBurst} not yet processed): frame dropped; slow down`
        : "too many bytes in flight (more than the connection's bound not yet processed): frame dropped; slow down",
    );
  }
  metrics.framesIn++;
  metrics.frameBytes += data.length;
  let parsed = parseFrame(data);
  // Signatures and digests cover the payload as it arrived (a field-name variant is read into our form by the
  // parser, PROFILE §15, but signed as sent).
  const signed = parsed.ok ? (parsed.signed ?? parsed.envelope.payload) : undefined;
  const canon = parsed.ok ? canonicalJsonResult(signed) : undefined;
  if (parsed.ok && canon && !canon.ok) {
    parsed = {
      ok: false,
      error: { code: "UNKNOWN_TYPE", detail: canon.error, type: parsed.envelope.type },
    };
  }
  // Hashed now (WebCrypto, concurrently with earlier frames), awaited in this frame's turn below. A kept frame's
  // forwarding time (`fwd_ts`, PROFILE §16) is signed but not part of the digest: a resend of the same DM is the
  // same frame for the seen cache and its msg_ref.
  const digestP = canon?.ok
    ? digestOf(
      parsed.ok && "fwd_ts" in parsed.envelope.payload ? withoutFwdTs(parsed.envelope.payload) : canon.text,
    )
    : Promise.resolve("");
  const sigText = parsed.ok ? parsed.envelope.sig : undefined;
  // Start verifying now with the key in force now (concurrently with earlier frames); when this frame's turn
  // comes, check the key again: if an earlier frame changed it (a hello, a link, a pin), verify again.
  const keyNow = () => {
    if (!parsed.ok) return undefined;
    const state = ctx.state();
    return expectedKey(state, state.conns.get(conn), parsed.envelope);
  };
  const verify = (key: string | undefined): Promise<boolean | PreimageForm> => {
    if (!parsed.ok || !sigText || !key) return Promise.resolve(false);
    metrics.verifications++;
    return verifySig(key, signed, sigText);
  };
  const early = keyNow();
  const earlyCheck = sigText ? verify(early) : Promise.resolve(false);
  s.inOrder(() => handle().catch(failed));
  async function handle(): Promise<void> {
    s.landed(bytes);
    const digest = await digestP;
    let ok = await earlyCheck;
    let key = early;
    if (sigText) {
      const late = keyNow();
      if (late !== early) {
        key = late;
        ok = await verify(late);
      }
    }
    // Frames received before the peer closed are still handled (the `closed` event follows them on this chain);
    // only those still waiting when we decided to close are skipped.
    if (s.skipping) return;
    const sig = !sigText ? "absent" : ok ? "valid" : "invalid";
    if (typeof ok === "string" && key) ctx.verifiedForm?.(key, ok);
    dispatch({
      kind: "frame",
      conn,
      now: now(),
      parsed,
      digest,
      sig,
      sigKey: ok ? key : undefined,
      fresh: fresh(),
    });
  }
  function failed(e: unknown): void {
    // Verification itself failed (not "did not verify"): refuse the frame rather than leave it unanswered.
    log.error("frame.failed", {
      conn,
      type: parsed.ok ? parsed.envelope.type : "",
      error: String(e),
    });
    if (s.skipping) return;
    const detail = "the node failed while verifying this frame; it was refused";
    dispatch({
      kind: "frame",
      conn,
      now: now(),
      parsed: { ok: false, error: { code: "UNKNOWN_TYPE", detail } },
      digest: "",
      sig: "absent",
    });
  }
}
