/**
 * A WebSocket client over a raw TCP connection, for tests of peers that stop reading: it does the HTTP upgrade
 * by hand, sends masked text frames, reads only when told to, and parses what it reads (text frames and the
 * close frame). A Deno `WebSocket` always reads, so it cannot play a slow reader.
 */

/** One frame read from the server. */
export type ServerFrame = { kind: "text"; text: string } | { kind: "close"; code: number; reason: string };

export class StalledPeer {
  private buf = new Uint8Array(0);
  /** Bytes read from the socket so far (frames and headers). */
  bytesRead = 0;

  private constructor(readonly conn: Deno.TcpConn) {}

  /** Connect and upgrade; resolves once the server answered 101. */
  static async open(port: number, deadlineMs = 10_000): Promise<StalledPeer> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const p = new StalledPeer(conn);
    await p.writeAll(
      new TextEncoder().encode(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${
            btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))))
          }\r\n` +
          `Sec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    const end = Date.now() + deadlineMs;
    for (;;) {
      const text = new TextDecoder().decode(p.buf);
      const i = text.indexOf("\r\n\r\n");
      if (i >= 0) {
        if (!text.startsWith("HTTP/1.1 101")) {
          conn.close();
          throw new Error(`upgrade refused: ${text.split("\r\n")[0]}`);
        }
        p.buf = p.buf.subarray(new TextEncoder().encode(text.slice(0, i + 4)).length);
        return p;
      }
      if (!(await p.fill(end))) throw new Error("connection closed during the upgrade");
    }
  }

  private async writeAll(data: Uint8Array): Promise<void> {
    for (let o = 0; o < data.length;) o += await this.conn.write(data.subarray(o));
  }

  /** Read more bytes into the buffer; false at end of stream. Throws past `end`. */
  private async fill(end: number): Promise<boolean> {
    const chunk = new Uint8Array(256 * 1024);
    const left = end - Date.now();
    if (left <= 0) throw new Error("timed out reading from the server");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      this.conn.read(chunk),
      new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), left)),
    ]).finally(() => clearTimeout(timer));
    if (n === "timeout") throw new Error("timed out reading from the server");
    if (n === null) return false;
    this.bytesRead += n;
    const next = new Uint8Array(this.buf.length + n);
    next.set(this.buf);
    next.set(chunk.subarray(0, n), this.buf.length);
    this.buf = next;
    return true;
  }

  /** Send one masked text frame. */
  send(text: string | object): Promise<void> {
    const payload = new TextEncoder().encode(typeof text === "string" ? text : JSON.stringify(text));
    const n = payload.length;
    const head = n < 126
      ? [0x81, 0x80 | n]
      : n < 65536
      ? [0x81, 0x80 | 126, n >> 8, n & 255]
      : [0x81, 0x80 | 127, 0, 0, 0, 0, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const frame = new Uint8Array(head.length + 4 + n);
    frame.set(head);
    frame.set(mask, head.length);
    for (let i = 0; i < n; i++) frame[head.length + 4 + i] = payload[i] ^ mask[i & 3];
    return this.writeAll(frame);
  }

  /** Read frames until `pred` matches one (returned), the stream ends (null), or the deadline passes (throws). */
  async readUntil(pred: (f: ServerFrame) => boolean, deadlineMs: number): Promise<ServerFrame | null> {
    const end = Date.now() + deadlineMs;
    for (;;) {
      for (let f = this.next(); f; f = this.next()) if (pred(f)) return f;
      if (!(await this.fill(end))) return null;
    }
  }

  /** The next complete frame in the buffer, if any. */
  private next(): ServerFrame | undefined {
    const b = this.buf;
    if (b.length < 2) return undefined;
    const op = b[0] & 0x0f;
    let len = b[1] & 0x7f;
    let o = 2;
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = (b[2] << 8) | b[3];
      o = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      len = Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0));
      o = 10;
    }
    if (b.length < o + len) return undefined;
    const body = b.subarray(o, o + len);
    this.buf = b.subarray(o + len);
    if (op === 8) {
      const code = body.length >= 2 ? (body[0] << 8) | body[1] : 1005;
      return { kind: "close", code, reason: new TextDecoder().decode(body.subarray(2)) };
    }
    if (op === 1) return { kind: "text", text: new TextDecoder().decode(body) };
    return this.next(); // ping, pong, continuation: skipped
  }

  /**
   * Read and discard everything until the stream ends, answering pings (the runtime closes a WebSocket that does
   * not answer its pings, 30 s by default). Frames are skipped by their headers, not decoded. Resolves with the
   * bytes read.
   */
  async discardAll(): Promise<number> {
    const scratch = new Uint8Array(16 * 1024);
    let skip = 0; // payload bytes of the current frame still to skip
    let head = new Uint8Array(0); // a partial frame header (or a ping's payload) carried over between reads
    for (;;) {
      let n: number | null;
      try {
        n = await this.conn.read(scratch);
      } catch {
        return this.bytesRead; // closed locally
      }
      if (n === null) return this.bytesRead;
      this.bytesRead += n;
      let data = scratch.subarray(0, n);
      while (data.length > 0) {
        if (skip > 0) {
          const k = Math.min(skip, data.length);
          skip -= k;
          data = data.subarray(k);
          continue;
        }
        const buf = new Uint8Array(head.length + data.length);
        buf.set(head);
        buf.set(data, head.length);
        const h = frameHeader(buf);
        if (!h || (h.op === 9 && buf.length < h.at + h.len)) {
          head = buf.slice(); // wait for the rest of the header (or of the ping)
          data = data.subarray(data.length);
          break;
        }
        if (h.op === 9) await this.sendRaw(0x8a, buf.slice(h.at, h.at + h.len)); // pong
        head = new Uint8Array(0);
        const payloadHere = Math.min(h.len, buf.length - h.at);
        skip = h.len - payloadHere;
        data = buf.subarray(h.at + payloadHere);
      }
    }
  }

  private sendRaw(first: number, payload: Uint8Array): Promise<void> {
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const frame = new Uint8Array(2 + 4 + payload.length);
    frame[0] = first;
    frame[1] = 0x80 | payload.length;
    frame.set(mask, 2);
    for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i] ^ mask[i & 3];
    return this.writeAll(frame);
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

/** The opcode, payload length and payload offset of the frame at the start of `b`, if its header is complete. */
function frameHeader(b: Uint8Array): { op: number; len: number; at: number } | null {
  if (b.length < 2) return null;
  const op = b[0] & 0x0f;
  const len7 = b[1] & 0x7f;
  if (len7 < 126) return { op, len: len7, at: 2 };
  if (len7 === 126) return b.length < 4 ? null : { op, len: (b[2] << 8) | b[3], at: 4 };
  if (b.length < 10) return null;
  return { op, len: Number(new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0)), at: 10 };
}

/** Resident memory of a process in KiB (VmRSS from /proc/<pid>/status). */
export function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]);
}
