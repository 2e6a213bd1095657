/** Start the real `socp serve` process on a free loopback port for end-to-end tests. */
import { join } from "node:path";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { nodeSecret } from "../../lib/net/identity.ts";
import { Store } from "../../lib/store/sqlite.ts";
import { fixtureKey, fixtureText } from "./keys.ts";
import { TextLineStream } from "./text_lines.ts";

/**
 * A fresh data directory whose node identity is a fixture key (`keyName`, default user6), so a node started on it
 * skips the RSA-4096 key generation: each test can start its own node cheaply.
 */
export async function fixtureDataDir(keyName = "user6"): Promise<string> {
  const dir = Deno.makeTempDirSync({ prefix: "socp-e2e-" });
  const pem = fixtureText(`${keyName}.pem`).replace(/-----[^-]+-----|\s/g, "");
  const pkcs8 = Uint8Array.from(atob(pem), (c) => c.charCodeAt(0));
  const sealed = await sealPrivateKey(pkcs8, await nodeSecret(dir));
  const store = Store.open(join(dir, "socp.db"));
  try {
    store.setIdentity({
      serverId: crypto.randomUUID(),
      pubkey: (await fixtureKey(keyName)).publicKey,
      sealed,
    }, Date.now());
  } finally {
    store.close();
  }
  return dir;
}

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

  /** `await using node = await NodeProcess.start()`: the node is stopped when the scope ends. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill();
  }

  /** Send a signal and wait for the process to end. */
  async kill(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
    return await this.exited;
  }
}
