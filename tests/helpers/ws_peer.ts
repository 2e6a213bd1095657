/** A raw WebSocket peer for end-to-end tests: send any frame, wait for frames matching a predicate. */

// deno-lint-ignore no-explicit-any
export type Frame = any;

export class RawPeer {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];

  private constructor(readonly ws: WebSocket) {
    const closed = Promise.withResolvers<{ code: number; reason: string }>();
    this.closed = closed.promise;
    ws.onclose = (e) => closed.resolve({ code: e.code, reason: e.reason });
    ws.onmessage = (e) => {
      const f = JSON.parse(String(e.data));
      this.frames.push(f);
      this.waiters = this.waiters.filter((w) => {
        if (w.pred(f)) {
          w.resolve(f);
          return false;
        }
        return true;
      });
    };
  }

  static open(url: string): Promise<RawPeer> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      ws.onopen = () => resolve(new RawPeer(ws));
      ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
    });
  }

  send(frame: Frame | string): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** The first frame (received before or after now) matching `pred`. */
  waitFor(pred: (f: Frame) => boolean, timeoutMs = 5000, what = "frame"): Promise<Frame> {
    const hit = this.frames.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.frames.map((f) => f.type))}`),
          ),
        timeoutMs,
      );
      this.waiters.push({ pred, resolve: (f) => (clearTimeout(t), resolve(f)) });
    });
  }

  /** Wait for an ERROR with `code`. */
  error(code: string, timeoutMs = 5000): Promise<Frame> {
    return this.waitFor(
      (f) => f.type === "ERROR" && f.payload.code === code && !this.consumed(f),
      timeoutMs,
      `ERROR ${code}`,
    );
  }

  private readonly used = new Set<Frame>();
  private consumed(f: Frame): boolean {
    if (this.used.has(f)) return true;
    this.used.add(f);
    return false;
  }

  /** Frames of `type` received so far. */
  count(type: string): number {
    return this.frames.filter((f) => f.type === type).length;
  }

  close(): void {
    try {
      this.ws.close();
    } catch { /* ignore */ }
  }

  /** `using peer = await RawPeer.open(url)`: closed when the scope ends. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Wait `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
