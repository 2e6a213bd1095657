/** Start the real `socp serve` process on a free loopback port for end-to-end tests. */
import { TextLineStream } from "./text_lines.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The V8 flags the node ships with (deno.json `start` and `compile`): tests run the node as it is deployed. */
export const SHIPPED_V8_FLAGS: readonly string[] = (() => {
  const cfg = JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)));
  const m = /--v8-flags=(\S+)/.exec(cfg.tasks.compile);
  return m ? [`--v8-flags=${m[1]}`] : [];
})();

/** A running node process. */
export class NodeProcess {
  readonly logs: string[] = [];
  port = 0;
  serverId = "";
  private exited: Promise<Deno.CommandStatus>;

  private constructor(readonly child: Deno.ChildProcess, readonly dataDir: string) {
    this.exited = child.status;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }
  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Spawn `socp serve` and wait until it listens. */
  static async start(
    opts: { dataDir?: string; env?: Record<string, string>; args?: string[]; port?: number } = {},
  ): Promise<NodeProcess> {
    const dataDir = opts.dataDir ?? Deno.makeTempDirSync({ prefix: "socp-e2e-" });
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...SHIPPED_V8_FLAGS,
        MAIN,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        String(opts.port ?? 0),
        "--data",
        dataDir,
        ...(opts.args ?? []),
      ],
      env: { NO_COLOR: "1", ...opts.env },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const node = new NodeProcess(child, dataDir);
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).pipeThrough(new TextLineStream());
    const ready = Promise.withResolvers<void>();
    (async () => {
      for await (const line of lines) {
        node.logs.push(line);
        const m = /node\.listening .*port=(\d+) server_id=(\S+)/.exec(line);
        if (m) {
          node.port = Number(m[1]);
          node.serverId = m[2];
          ready.resolve();
        }
      }
      ready.reject(new Error(`node exited before listening:\n${node.logs.join("\n")}`));
    })();
    const timeout = setTimeout(
      () => ready.reject(new Error(`node did not start in 60 s:\n${node.logs.join("\n")}`)),
      60_000,
    );
    try {
      await ready.promise;
    } finally {
      clearTimeout(timeout);
    }
    return node;
  }

  /** Send a signal and wait for the process to end. */
  async kill(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
    return await this.exited;
  }
}
