/** Split a text stream into lines (like @std/streams' TextLineStream, which JSR cannot provide here). */
export class TextLineStream extends TransformStream<string, string> {
  constructor() {
    let buf = "";
    super({
      transform(chunk, ctl) {
        buf += chunk;
        const parts = buf.split("\n");
        buf = parts.pop()!;
        for (const p of parts) ctl.enqueue(p.replace(/\r$/, ""));
      },
      flush(ctl) {
        if (buf) ctl.enqueue(buf);
      },
    });
  }
}
