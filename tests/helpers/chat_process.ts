/** A real `socp chat` process driven through its stdin, its stdout and stderr collected. */
import { join } from "node:path";
import { sealUserKeyFile } from "../../lib/crypto/keyfile.ts";
import type { PrivateKey } from "../../lib/crypto/rsa.ts";
import { until } from "./until.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

export class ChatProcess {
  out = "";
  err = "";
  readonly child: Deno.ChildProcess;
  private readonly writer: WritableStreamDefaultWriter<Uint8Array>;
  private readonly done: Promise<unknown>;

  constructor(args: string[], env: Record<string, string>) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "chat", ...args],
      env: { NO_COLOR: "1", ...env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.writer = this.child.stdin.getWriter();
    const read = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) add(t);
    };
    this.done = Promise.all([
      read(this.child.stdout, (t) => this.out += t),
      read(this.child.stderr, (t) => this.err += t),
    ]);
  }

  async type(text: string): Promise<void> {
    await this.writer.write(new TextEncoder().encode(text));
  }

  /**
   * Wait until stdout holds `what` (deadline `ms`: a bound on a wait, not a timing check; starting a chat process
   * took over 15 s on two cores shared by many test processes).
   */
  wait(what: string | RegExp, ms = 30_000): Promise<true> {
    const hit = () => typeof what === "string" ? this.out.includes(what) : what.test(this.out);
    return until(() => hit(), `chat output ${what}; got:\n${this.out}\n${this.err}`, ms);
  }

  /** Type /quit (unless `quit` is false), close stdin, and return the exit code. */
  async end(quit = true): Promise<number> {
    if (quit) await this.type("/quit\n").catch(() => {});
    await this.writer.close().catch(() => {});
    const st = await this.child.status;
    await this.done;
    return st.code;
  }
}

/** Write a (current format) key file for `key` under `dir`; the passphrase is "passphrase". */
export async function writeKeyFile(
  dir: string,
  name: string,
  key: PrivateKey,
  userId: string,
): Promise<string> {
  const path = join(dir, `${name}.json`);
  const file = await sealUserKeyFile({ userId, displayName: name, key }, "passphrase");
  Deno.writeTextFileSync(path, JSON.stringify(file));
  return path;
}
