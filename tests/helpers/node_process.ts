/** Start the real `socp serve` process on a free loopback port for end-to-end tests. */
import { join } from "node:path";
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { nodeSecret } from "../../lib/net/identity.ts";
import { Store } from "../../lib/store/sqlite.ts";
import { fixtureKey, fixtureText } from "./keys.ts";
import { TextLineStream } from "./text_lines.ts";

/** Fixture node identities (tests/fixtures/keys/node1..node8.pem, RSA-4096), handed out in turn. */
const NODE_KEYS = ["node1", "node2", "node3", "node4", "node5", "node6", "node7", "node8"];
let nextNodeKey = 0;
/** Fixture public-channel keys (channel1..channel4.pem), handed out in turn to nodes that start a network. */
const CHANNEL_KEYS = ["channel1", "channel2", "channel3", "channel4"];
let nextChannelKey = 0;

function pkcs8Of(keyName: string): Uint8Array {
  const pem = fixtureText(`${keyName}.pem`).replace(/-----[^-]+-----|\s/g, "");
  return Uint8Array.from(atob(pem), (c) => c.charCodeAt(0));
}

/**
 * A fresh data directory whose node identity is a fixture key, so a node started on it skips the RSA-4096 key
 * generation (0.7 to 4.5 s each on two idle cores, 10 s and more under load): each test can start its own node
 * cheaply. `keyName` is by default the next of node1..node8 in turn, so up to eight nodes running at once in one
 * test file have distinct keys. `dir` (created when missing) instead of a new temporary directory. `channel`:
 * also hold a public-channel key (the next of channel1..channel4), as a node that started a network before does,
 * so a first server does not generate one (another RSA-4096 key) at start; a node that joins a network adopts
 * the network's key instead of its own (PROFILE §8), so only nodes that start a network need it.
 */
export async function fixtureDataDir(
  keyName?: string,
  dir?: string,
  opts: { channel?: boolean } = {},
): Promise<string> {
  keyName ??= NODE_KEYS[nextNodeKey++ % NODE_KEYS.length];
  if (dir) Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  else dir = Deno.makeTempDirSync({ prefix: "socp-e2e-" });
  const secret = await nodeSecret(dir);
  const sealed = await sealPrivateKey(pkcs8Of(keyName), secret);
  const store = Store.open(join(dir, "socp.db"));
  try {
    store.setIdentity({
      serverId: crypto.randomUUID(),
      pubkey: (await fixtureKey(keyName)).publicKey,
      sealed,
    }, Date.now());
    if (opts.channel) {
      const channel = CHANNEL_KEYS[nextChannelKey++ % CHANNEL_KEYS.length];
      const pub = (await fixtureKey(channel)).publicKey;
      store.setChannelKey(pub, await sealPrivateKey(pkcs8Of(channel), secret));
      store.setChannel(1, pub, Date.now());
    }
  } finally {
    store.close();
  }
  return dir;
}

function isEmptyDir(dir: string): boolean {
  try {
    for (const _ of Deno.readDirSync(dir)) return false;
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

/** Whether a node started with these settings starts a network (no bootstrap list it could know of). */
function startsNetwork(args: string[], env: Record<string, string>): boolean {
  if (args.includes("--introducer") || env.SOCP_INTRODUCER === "1") return true;
  const envFile = args.indexOf("--env-file");
  let fromFile = "";
  try {
    if (envFile >= 0) fromFile = Deno.readTextFileSync(args[envFile + 1]);
  } catch { /* no such file: the node says so */ }
  const joins = ["--bootstrap", "--bootstrap-file"].some((f) => args.includes(f)) ||
    /^\s*SOCP_BOOTSTRAP/m.test(fromFile);
  return !joins && !env.SOCP_BOOTSTRAP && !env.SOCP_BOOTSTRAP_FILE;
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

  /**
   * Spawn `socp serve` and wait until it listens. Without `dataDir`, or with one that does not exist yet or is
   * empty, the node starts on a fixture identity ({@linkcode fixtureDataDir}), with a fixture channel key when it
   * starts a network; a `dataDir` the node used before is left as it is (a restart). `fresh: true` leaves the
   * directory empty, so the node creates its own RSA-4096 identity and channel key (slow: only for tests about
   * that).
   */
  static async start(
    opts: {
      dataDir?: string;
      env?: Record<string, string>;
      args?: string[];
      port?: number;
      fresh?: boolean;
    } = {},
  ): Promise<NodeProcess> {
    const channel = startsNetwork(opts.args ?? [], opts.env ?? {});
    let dataDir: string;
    if (opts.fresh) dataDir = opts.dataDir ?? Deno.makeTempDirSync({ prefix: "socp-e2e-" });
    else if (opts.dataDir === undefined) dataDir = await fixtureDataDir(undefined, undefined, { channel });
    else if (isEmptyDir(opts.dataDir)) dataDir = await fixtureDataDir(undefined, opts.dataDir, { channel });
    else dataDir = opts.dataDir;
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
