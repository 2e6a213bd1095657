/**
 * The client core's pacing: the limits the server announces in its hello ACK (docs/PROTOCOL.md, "Limits and
 * errors"), a token bucket that keeps our frames under the server's, and the chunk size of the files we send.
 * Pure: the time comes from the caller.
 *
 * @module
 */
import { decodePublicKey } from "../protocol/keys.ts";

/** The limits a server holds a user's connection to (PROFILE §11). */
export interface ServerLimits {
  /** Frames per second the server's token bucket refills. */
  ratePerSec: number;
  /** The size of that bucket. */
  rateBurst: number;
  /** Largest frame it reads, in bytes. */
  maxFrameBytes: number;
  /** Largest file a transfer may announce, in bytes. */
  maxFileBytes: number;
}

/** PROFILE §11's defaults: what we assume of a server that announces nothing. */
export const ASSUMED_LIMITS: Readonly<ServerLimits> = {
  ratePerSec: 100,
  rateBurst: 400,
  maxFrameBytes: 256 * 1024,
  maxFileBytes: 16 * 1024 * 1024,
};

/** We use this share of the server's rate, and half its burst: room for other traffic and clock drift. */
export const RATE_SHARE = 0.8;

/** Plaintext bytes per FILE_CHUNK at most: 16 OAEP blocks (PROFILE §9). */
export const MAX_CHUNK_BLOCKS = 16;

/** A number field of an announcement, when it is a positive integer up to `max`. */
function count(v: unknown, max: number): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v >= 1 && v <= max ? v : undefined;
}

/**
 * The limits announced in a hello ACK's `limits` object, each field bounded (a field missing or out of range
 * keeps the assumed default); null when there is no such object.
 */
export function readLimits(v: unknown): ServerLimits | null {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  return {
    ratePerSec: count(o.rate_per_sec, 1_000_000) ?? ASSUMED_LIMITS.ratePerSec,
    rateBurst: count(o.rate_burst, 1_000_000) ?? ASSUMED_LIMITS.rateBurst,
    maxFrameBytes: count(o.max_frame_bytes, 1 << 30) ?? ASSUMED_LIMITS.maxFrameBytes,
    maxFileBytes: count(o.max_file_bytes, 2 ** 40) ?? ASSUMED_LIMITS.maxFileBytes,
  };
}

/**
 * Plaintext bytes per chunk for a file encrypted to `encKey`: as many OAEP blocks (up to 16) as keep the chunk's
 * frame under half the server's frame limit.
 */
export function chunkBytes(encKey: string, limits: ServerLimits): number {
  const d = decodePublicKey(encKey);
  const k = d.ok ? d.key.modulus.length : 512;
  const perBlock = Math.max(1, k - 66); // OAEP with SHA-256
  const b64PerBlock = Math.ceil((k * 4) / 3);
  const room = Math.floor(limits.maxFrameBytes / 2) - 2048; // the envelope around the ciphertext
  const blocks = Math.max(1, Math.min(MAX_CHUNK_BLOCKS, Math.floor(room / b64PerBlock)));
  return blocks * perBlock;
}

/** A token bucket in front of the socket: frames beyond it wait, in order, for their token. */
export class Pacer {
  /** Tokens refilled per millisecond. */
  perMs: number;
  /** Bucket size. */
  burst: number;
  /** Tokens now (as of `at`). */
  tokens: number;
  /** Time of the last refill. */
  at = 0;
  /** Frames waiting for a token, oldest first. */
  readonly queue: string[] = [];

  /** A pacer for `limits` (full). */
  constructor(limits: ServerLimits = ASSUMED_LIMITS) {
    this.perMs = (limits.ratePerSec * RATE_SHARE) / 1000;
    this.burst = Math.max(1, Math.floor(limits.rateBurst / 2));
    this.tokens = this.burst;
  }

  /** The server announced its limits: pace under them from now on. */
  configure(limits: ServerLimits): void {
    this.perMs = (limits.ratePerSec * RATE_SHARE) / 1000;
    this.burst = Math.max(1, Math.floor(limits.rateBurst / 2));
    this.tokens = Math.min(this.tokens, this.burst);
  }

  /** A new connection: its server-side bucket is full, nothing waits. */
  reset(now: number): void {
    this.tokens = this.burst;
    this.at = now;
    this.queue.length = 0;
  }

  /** Add the tokens earned since the last refill. */
  refill(now: number): void {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + (now - this.at) * this.perMs);
      this.at = now;
    }
  }

  /** True when a frame offered now would leave at once. */
  free(now: number): boolean {
    this.refill(now);
    return this.queue.length === 0 && this.tokens >= 1;
  }

  /** Offer a frame; returns the frames that may leave now (it, or nothing while others wait). */
  offer(text: string, now: number): string[] {
    this.queue.push(text);
    return this.release(now);
  }

  /** The waiting frames whose token has come, in order. */
  release(now: number): string[] {
    this.refill(now);
    const out: string[] = [];
    while (this.queue.length > 0 && this.tokens >= 1) {
      this.tokens -= 1;
      out.push(this.queue.shift()!);
    }
    return out;
  }

  /** When the next token is earned (for a frame waiting, or one about to be offered). */
  nextTokenAt(): number {
    return this.at + Math.max(1, Math.ceil((1 - this.tokens) / this.perMs));
  }
}
