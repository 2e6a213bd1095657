/**
 * Reads standard input line by line, and passphrases without echo on a terminal.
 *
 * @module
 */

/** A line reader over a byte stream. */
export class LineReader {
  private buf = "";
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** The next line without its newline, or `null` at end of input. */
  async next(): Promise<string | null> {
    while (true) {
      const i = this.buf.indexOf("\n");
      if (i >= 0) {
        const line = this.buf.slice(0, i).replace(/\r$/, "");
        this.buf = this.buf.slice(i + 1);
        return line;
      }
      if (this.done) {
        if (this.buf.length === 0) return null;
        const line = this.buf;
        this.buf = "";
        return line;
      }
      const r = await this.reader.read();
      if (r.done) this.done = true;
      else this.buf += this.decoder.decode(r.value, { stream: true });
    }
  }
}

/**
 * Ask for a passphrase before any {@linkcode LineReader} takes stdin: hidden (raw mode, no echo) on a
 * terminal, otherwise the first input line. Reads byte by byte so no later input is consumed.
 */
export async function readPassphrase(question: string): Promise<string> {
  const enc = new TextEncoder();
  Deno.stderr.writeSync(enc.encode(question));
  const tty = Deno.stdin.isTerminal();
  if (tty) Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  try {
    while (true) {
      const n = await Deno.stdin.read(one);
      if (n === null || n === 0) break;
      const b = one[0];
      if (b === 0x0a || b === 0x0d) break;
      if (tty && b === 0x03) throw new Error("cancelled");
      if (tty && (b === 0x7f || b === 0x08)) {
        bytes.pop();
        continue;
      }
      bytes.push(b);
    }
  } finally {
    if (tty) {
      Deno.stdin.setRaw(false);
      Deno.stderr.writeSync(enc.encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
