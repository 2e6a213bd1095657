/**
 * Outbound accounting for the shell: how many bytes a frame will take on the wire (estimated before it is
 * signed and serialized), and pacing so that at most a small amount sits inside the runtime's WebSocket buffer.
 *
 * A peer that stops reading makes every frame sent to it wait. The shell counts those bytes per connection (its
 * own queue plus `WebSocket.bufferedAmount`) and cuts the connection past `Limits.maxUnsentBytes`. Frames wait in
 * the shell's queue rather than in the runtime's buffer because only the shell's queue can be dropped: Deno's
 * WebSocket keeps what it buffered until the peer reads it or the TCP connection ends, even after `close()`.
 *
 * @module
 */

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
