/**
 * Outbound accounting for the shell: how many bytes a frame will take on the wire (estimated before it is
 * signed and serialized), and pacing so that at most a small amount sits inside the runtime's WebSocket buffer.
 *
 * A peer that stops reading makes every frame sent to it wait. The shell counts those bytes per connection (its
 * own queue plus `WebSocket.bufferedAmount`) and cuts the connection past `Limits.maxUnsentBytes`. Frames wait in
 * the shell's queue rather than in the runtime's buffer because only the shell's queue can be dropped: Deno's
 * WebSocket keeps what it buffered until the peer reads it or the TCP connection ends, even after `close()`.
 *
 * {@linkcode send} carries out one `send` effect on a connection: the bounds first, then the direct path (nothing
 * queued before it and its text ready: out now), else signed (and sealed) concurrently and queued in order.
 *
 * @module
 */
import type { Effect } from "../core/types.ts";
import { type Envelope, serializeEnvelope } from "../protocol/envelope.ts";
import type { ChannelKeys, FrameSigner } from "./ports.ts";

/**
 * Bytes over which frames wait in the shell instead of the runtime's WebSocket buffer: 64 KiB (less for a tiny
 * `maxUnsentBytes`). The runtime keeps per socket what it was handed at once, so a larger mark costs every user
 * memory after each burst (about 8 KiB per idle user at 1 MiB); the shell refills the buffer on the next turn of
 * the event loop, so a reader that keeps up is not slowed down.
 */
export function highWater(maxUnsentBytes: number): number {
  return Math.max(16 * 1024, Math.min(64 * 1024, Math.floor(maxUnsentBytes / 8)));
}

/**
 * Bytes of frames one connection may hold in the shell (signed or still being signed, plus its socket buffer)
 * before it is cut as too slow, without waiting for its stall to be confirmed:
 * - `maxUnsentBytes` (8 MiB by default) while its peer is behind (its socket buffer above the high-water mark:
 *   it does not take what it was given). The stall rule alone counted only signed frames and waited a quarter
 *   second to confirm the stall, and in that time a sender at loopback speed filled a non-reader's queue with
 *   80 MB of DMs, their signed texts and the preimages being signed;
 * - four times that whatever the peer does: frames that wait for the node's signatures (a file relayed faster
 *   than a loaded node signs) do not count against a reader that keeps up until then, but memory stays bounded.
 * Frames come from the reducer one at a time, so a bound is never passed by more than one frame.
 */
export function holdBound(maxUnsentBytes: number): { behind: number; always: number } {
  return { behind: maxUnsentBytes, always: 4 * maxUnsentBytes };
}

/** Room for the envelope and an RSA-4096 signature around a payload. */
const ENVELOPE_BYTES = 1024;

/**
 * An upper-ish estimate of a frame's serialized size without serializing it: the lengths of its strings (×1 for
 * the base64url and ASCII that fill frames; non-ASCII is rare and bounded by the frame limit) plus a few bytes per
 * value. Iterative and bounded, so a hostile shape cannot make it slow or deep.
 */
export function approxBytes(frame: { payload?: unknown }): number {
  const hit = sizes.get(frame);
  if (hit !== undefined) return hit;
  const n = measure(frame);
  sizes.set(frame, n);
  return n;
}

/** Sizes by frame object: a frame fanned out to every user (an advert, a removal) is measured once. */
const sizes = new WeakMap<object, number>();

function measure(frame: { payload?: unknown }): number {
  let n = ENVELOPE_BYTES;
  const stack: unknown[] = [frame.payload];
  let visited = 0;
  while (stack.length > 0 && visited < 100_000) {
    const v = stack.pop();
    visited++;
    if (typeof v === "string") n += v.length + 3;
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        n += k.length + 4;
        stack.push(x);
      }
    } else n += 8;
  }
  return n;
}

/** The connection a frame is sent on (lib/net/connection.ts's `Connection`). */
export interface OutboundLink {
  /** Frames may be queued on it. */
  readonly accepting: boolean;
  /** Whether a frame of `bytes` may be held (else it has been cut as too slow). */
  room(bytes: number): boolean;
  /** Nothing queued before a frame of `bytes` and room in the socket's buffer: it may go out now. */
  direct(bytes: number): boolean;
  /** Hand a text to the socket now; false when it is not open. */
  put(text: string): boolean;
  /** Queue a frame whose text is being made, after what is queued before it. */
  queue(bytes: number, text: Promise<string>, undelivered: () => void, failed: (e: unknown) => void): void;
}

/** What {@linkcode send} needs besides the connection. */
export interface SendContext {
  /** Signs frames. */
  signer: FrameSigner;
  /** Seals frames that carry the channel key. */
  channel: ChannelKeys;
  /** Sign in the spaced form (PROFILE §15). */
  spaced: boolean;
  /** The frame never reached an open socket. */
  undelivered(): void;
  /** Making its text failed. */
  failed(e: unknown): void;
}

/**
 * Sign (and seal) one frame and send or queue it on `c` (undefined: gone), cutting a peer that does not read.
 * False when it was not taken (the connection is gone, closing or was just cut): then `undelivered` ran.
 */
export function send(
  c: OutboundLink | undefined,
  fx: Extract<Effect, { kind: "send" }>,
  o: SendContext,
): boolean {
  const { frame, seal } = fx;
  if (!c || !c.accepting) return void o.undelivered(), false;
  // A peer that does not read makes frames wait; past the bound it is cut (PROFILE §11, unsent bytes). Frames
  // still being signed count against the hold bounds: they wait for us, but take memory.
  const bytes = approxBytes(frame);
  if (!c.room(bytes)) return void o.undelivered(), false;
  const { signer, spaced } = o;
  const sign = fx.sign;
  // Nothing waiting before it and its text ready (an ACK, a stored advert): out now, not after promise turns.
  if (!seal && c.direct(bytes)) {
    const t = signer.textNow?.(frame, sign, sign && spaced);
    if (t !== undefined) {
      if (!c.put(t)) o.undelivered();
      return true;
    }
  }
  let text: Promise<string>;
  if (seal) {
    const f: Envelope = { ...frame };
    text = o.channel.seal(f, seal).then((ok) =>
      ok
        ? signer.sign(f.payload, sign && spaced).then((sig) => serializeEnvelope({ ...f, sig }))
        : Promise.reject(new Error("no channel key"))
    );
  } else {
    // Signed and serialized once per frame object (an advert kept while its user is online, a broadcast).
    text = signer.text(frame, sign, sign && spaced);
  }
  c.queue(bytes, text, o.undelivered, o.failed);
  return true;
}
