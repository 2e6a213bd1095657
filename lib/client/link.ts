/**
 * The socket shell of a {@linkcode ClientCore}: it carries out the core's outputs (open or close a WebSocket,
 * write frames, run crypto on the injected {@linkcode CryptoRunner}, settle tickets, hand events on), feeds it
 * what the socket does, and arms one timer for the core's next deadline (no polling). Browser-safe: no `Deno.*`.
 * Policy (when to reconnect, pacing, timeouts) is the core's; this file only does what it is told.
 *
 * @module
 */
import { encodeBase64Url } from "../protocol/base64url.ts";
import { withFrameId } from "../protocol/envelope.ts";
import type { ClientCore } from "./core.ts";
import type { ClientEvent, CryptoResult, CryptoRunner } from "./types.ts";

/**
 * A random UUID v4 for an envelope `id` (PROFILE §15). `crypto.randomUUID` exists only in secure contexts; a page
 * served over plain http from another host still has `crypto.getRandomValues`.
 */
export function randomUuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Write one frame's text with a fresh envelope `id` (PROFILE §15: some servers refuse frames without one). */
function put(ws: WebSocket, text: string): void {
  ws.send(withFrameId(text, randomUuid()));
}

/** What the link tells its owner. */
export interface LinkHooks {
  /** An event of the core (after the link's own bookkeeping). */
  event(e: ClientEvent): void;
  /** A socket closed or could not open, with what happened in words (before the core hears of it). */
  lost(why: string): void;
}

/** Drives one core over WebSockets to `url` (see the module documentation). */
export class Link {
  /** The socket, while one is open or opening. */
  ws: WebSocket | null = null;
  private readonly tickets = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly pendingOk = new Set<number>();
  private readonly pendingErrors = new Map<number, string>();
  /** Frames received and not yet handed to the core (see `feed`). */
  private readonly frames: string[] = [];
  private feeding = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The deadline the timer is armed for. */
  private armedFor: number | undefined;
  private ended = false;
  /** Why the core asked to close the socket (the attempt took too long), for the words of the loss. */
  private gaveUp = "";

  /** A link for `core`; nothing happens until the core asks for a socket (`core.start`, then `pump`). */
  constructor(
    readonly url: string,
    private readonly core: ClientCore,
    private readonly runner: CryptoRunner,
    private readonly hooks: LinkHooks,
  ) {}

  /** True while the socket is open. */
  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Wait for the work under `ticket` (after carrying out what the core asked for so far). */
  settled(ticket: number): Promise<void> {
    this.pump();
    if (this.pendingOk.delete(ticket)) return Promise.resolve();
    const err = this.pendingErrors.get(ticket);
    if (err !== undefined) {
      this.pendingErrors.delete(ticket);
      return Promise.reject(new Error(err));
    }
    return new Promise((resolve, reject) => this.tickets.set(ticket, { resolve, reject }));
  }

  /** Write a frame now, past the core's pacer (the goodbye). False when no socket is open. */
  writeNow(text: string): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    put(this.ws, text);
    return true;
  }

  /** Carry out what the core asked for, then arm the timer for its next deadline. */
  pump(): void {
    for (const o of this.core.drain()) {
      switch (o.kind) {
        case "send":
          if (this.ws?.readyState === WebSocket.OPEN) put(this.ws, o.text);
          break;
        case "open":
          this.connect();
          break;
        case "close":
          this.gaveUp = o.reason;
          try {
            this.ws?.close(o.code, o.reason.slice(0, 120));
          } catch { /* closing already */ }
          break;
        case "crypto":
          this.runner.run(o.op).then(
            (r) => this.cryptoDone(o.id, r),
            () => this.cryptoDone(o.id, null),
          );
          break;
        case "settled": {
          // A ticket settles after its creator registered it, or is kept until it does.
          const t = this.tickets.get(o.ticket);
          if (t) {
            this.tickets.delete(o.ticket);
            if (o.error) t.reject(new Error(o.error));
            else t.resolve();
          } else if (o.error) this.pendingErrors.set(o.ticket, o.error);
          else this.pendingOk.add(o.ticket);
          break;
        }
        case "event":
          this.hooks.event(o.event);
          break;
      }
    }
    this.arm();
  }

  /** Arm timers again after {@linkcode end} (the client is started again). */
  resume(): void {
    this.ended = false;
  }

  /** No more timers (the client stopped); the socket is closed by the caller. */
  end(): void {
    this.ended = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = undefined;
  }

  /** Arm the one timer for the core's next deadline (or none). */
  private arm(): void {
    const d = this.ended ? undefined : this.core.nextDeadline();
    if (d === this.armedFor) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = d;
    if (d === undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.armedFor = undefined;
      this.core.tick(Date.now());
      this.pump();
    }, Math.max(0, d - Date.now()));
  }

  /** Open a WebSocket and wire it to the core. */
  private connect(): void {
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      const why = `cannot connect to ${this.url}: ${(e as Error).message}`;
      this.hooks.lost(why);
      this.core.closed(Date.now(), 1006, "", why);
      return this.pump();
    }
    this.ws = ws;
    this.gaveUp = "";
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.core.opened(Date.now(), encodeBase64Url(crypto.getRandomValues(new Uint8Array(16))));
      this.pump();
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        this.hooks.event({ kind: "warning", detail: "ignored a binary frame from the server" });
        return;
      }
      this.frames.push(e.data);
      this.feed();
    };
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const f of this.frames.splice(0)) this.core.frame(f, Date.now()); // what arrived before the close
      const gaveUp = this.gaveUp;
      this.gaveUp = "";
      const base = opened
        ? `connection closed (${e.code}${e.reason ? ": " + e.reason : ""})`
        : `cannot connect to ${this.url}`;
      const why = gaveUp && !base.includes(gaveUp) ? `${base}: ${gaveUp}` : base;
      this.hooks.lost(why);
      this.core.closed(Date.now(), e.code, e.reason, why);
      this.pump();
    };
  }

  /**
   * Hand the frames that arrived to the core, in order, one at a time while it is not waiting for crypto on an
   * earlier one, and for at most ~8 ms per turn of the event loop: a burst (150 chunks of a file queued behind
   * the check of its FILE_START) never holds a browser's main thread for long.
   */
  private feed(): void {
    if (this.feeding) return;
    const start = Date.now();
    while (this.frames.length > 0 && !this.core.inboundWaiting) {
      this.core.frame(this.frames.shift()!, Date.now());
      this.pump();
      if (this.frames.length > 0 && Date.now() - start >= 8) {
        this.feeding = true;
        setTimeout(() => {
          this.feeding = false;
          this.feed();
        }, 0);
        return;
      }
    }
  }

  /** Feed a finished crypto operation back to the core. */
  private cryptoDone(id: number, r: CryptoResult): void {
    this.core.cryptoDone(id, r, Date.now());
    this.pump();
    this.feed();
  }
}
