/**
 * The `socp` command line: serve, chat, info, help, --version.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { fingerprint, loadOrCreateIdentity, secureDataDir } from "../net/identity.ts";
import { Logger } from "../net/log.ts";
import { bootstrapEntry } from "../web/routes.ts";
import { DataDirInUse, PortInUse, startNode } from "../net/node.ts";
import { Store } from "../store/sqlite.ts";
import { VERSION } from "../version.ts";
import { CHAT_HELP, runChat } from "./chat.ts";
import { serveConfig, UsageError } from "./config.ts";

const HELP = `socp ${VERSION}: a Secure Overlay Chat Protocol (SOCP v1.3) node and client

Usage:
  socp serve [--host H] [--port P] [--data DIR] [--env-file F] [--public-host H] [--log-level L]
             [--bootstrap host:port#PUBKEY ...] [--bootstrap-file F] [--introducer]
             [--heartbeat-interval S] [--link-timeout S] [--tls-cert FILE --tls-key FILE] [--ca-cert FILE]
             [--max-unsent-bytes N] [--hello-rate N] [--hello-burst N] [--max-conns-per-addr N]
  socp chat --server URL [--name NAME] [--key FILE] [--downloads DIR]
  socp info [--data DIR] [--port P] [--public-host H] [--tls-cert FILE] [--env-file F] [--entry]
  socp help [command]
  socp --version

Run "socp <command> --help" for a command's options.
`;

const COMMANDS: Record<
  string,
  {
    help: string;
    options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }>;
  }
> = {
  serve: {
    help: `socp serve: run a node (WebSocket + HTTP on one port)

Options (flag, then environment variable, then .env file, then default):
  --host H          address to listen on            SOCP_HOST        0.0.0.0
  --port P          port (0 picks a free one)       SOCP_PORT        8765
  --data DIR        SQLite file and identity        SOCP_DATA        ./socp-data
  --public-host H   host name others use to reach us SOCP_PUBLIC_HOST (the listen host)
  --env-file F      read settings from F            (./.env when present)
  --log-level L     debug, info, warn or error      SOCP_LOG_LEVEL   info
  --tls-cert FILE   PEM certificate (chain): serve https:// and wss://   SOCP_TLS_CERT
  --tls-key FILE    PEM private key of that certificate                 SOCP_TLS_KEY
  --ca-cert FILE    PEM CA certificate(s) trusted for our own wss:// and https:// dials, besides
                    the system's (a private CA)                         SOCP_CA_CERT
                    (DENO_CERT=FILE, read by Deno when the process starts, does the same)

Federation (joining other servers):
  --bootstrap host:port#PUBKEY   an introducer to join through (repeatable; the entry
                                 "socp info" prints there; also a URL
                                 ws://host:port/path#PUBKEY or wss://…)       SOCP_BOOTSTRAP (comma-separated)
  --bootstrap-file F             YAML in the standard's shape:
                                   bootstrap_servers: [{host, port, pubkey}]  SOCP_BOOTSTRAP_FILE
  --introducer                   start a network alone; do not join           SOCP_INTRODUCER=1
  --heartbeat-interval S         seconds between heartbeats (fractions ok)    SOCP_HEARTBEAT_INTERVAL  15
  --link-timeout S               silence that closes a link                   SOCP_LINK_TIMEOUT        45

Limits (see docs/DEPLOY.md):
  --max-unsent-bytes N    bytes that may wait for a peer that does not read;
                          past it the connection is cut (1008 "too slow")    SOCP_MAX_UNSENT_BYTES    8388608
  --hello-rate N          USER_HELLOs per second from one address            SOCP_HELLO_RATE          10
  --hello-burst N         ... and how many may come at once                  SOCP_HELLO_BURST         30
  --max-conns-per-addr N  open connections from one address                  SOCP_MAX_CONNS_PER_ADDR  64
  SOCP_RATE_PER_SEC (100) and SOCP_RATE_BURST (400): frames per connection (server links get 10x).

With no reachable bootstrap entry the node serves as the first server (introducer) of a new network and keeps
trying the list. SOCP_ALLOWED_SERVER_KEYS (comma-separated keys) admits only those servers.
Other settings: SOCP_NODE_PASSPHRASE (seals the identity key; default: a random secret in DIR/node.secret),
SOCP_MAX_FRAME_BYTES (262144), SOCP_FRESHNESS_SECONDS (600),
SOCP_FRESHNESS_SECONDS is at most 3600.
Lab modes (deliberately weakened; never in production), from a flag or the real environment only, never from a
.env file: --lab-weak-keys (SOCP_LAB_WEAK_KEYS=1), --lab-replay (SOCP_LAB_REPLAY=1).
`,
    options: {
      host: { type: "string" },
      port: { type: "string" },
      data: { type: "string" },
      "env-file": { type: "string" },
      "public-host": { type: "string" },
      "log-level": { type: "string" },
      bootstrap: { type: "string", multiple: true },
      "bootstrap-file": { type: "string" },
      introducer: { type: "boolean" },
      "heartbeat-interval": { type: "string" },
      "link-timeout": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "ca-cert": { type: "string" },
      "lab-weak-keys": { type: "boolean" },
      "lab-replay": { type: "boolean" },
      "max-unsent-bytes": { type: "string" },
      "hello-rate": { type: "string" },
      "hello-burst": { type: "string" },
      "max-conns-per-addr": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  },
  chat: {
    help: `socp chat: talk to people on a node

Options:
  --server URL   ws://host:port of a node (required)
  --name NAME    your display name; also names your key file
  --key FILE     key file (default: $SOCP_HOME/keys/NAME.json, SOCP_HOME defaults to ~/.socp)
  --downloads D  where received files are saved (default ./socp-downloads; never overwritten)
The key file is created on first use and encrypted with a passphrase (asked for, or SOCP_PASSPHRASE).

${CHAT_HELP}`,
    options: {
      server: { type: "string" },
      name: { type: "string" },
      key: { type: "string" },
      downloads: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  },
  info: {
    help: `socp info: print this node's server id, public key and bootstrap entry

Options:
  --data DIR       data directory (SOCP_DATA, default ./socp-data); the identity is created if missing
  --env-file F     read settings from F
  --port P         the port others connect to (SOCP_PORT, default 8765)
  --host H         the address the node listens on (SOCP_HOST, default 0.0.0.0)
  --public-host H  the host others connect to (SOCP_PUBLIC_HOST, default: the listen host, or localhost
                   when it listens on 0.0.0.0), as for socp serve
  --tls-cert FILE  the node serves TLS (SOCP_TLS_CERT): the entry is then wss://host:port#PUBKEY
  --entry          print only the bootstrap entry (for --bootstrap "$(socp info --entry)")
The entry is the same as the running node's /.well-known/socp "bootstrap" field and its log line
node.bootstrap_entry.
`,
    options: {
      data: { type: "string" },
      "env-file": { type: "string" },
      port: { type: "string" },
      "public-host": { type: "string" },
      host: { type: "string" },
      "tls-cert": { type: "string" },
      entry: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  },
};

type Flags = Record<string, string | boolean | string[] | undefined> & { help?: boolean };

function parse(cmd: string, args: string[]): Flags {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: COMMANDS[cmd].options,
      strict: true,
      allowPositionals: true,
    });
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" for socp ${cmd}`);
    return values as Flags;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, "")} (see socp ${cmd} --help)`);
  }
}

async function serve(args: string[]): Promise<number> {
  const flags = parse("serve", args);
  if (flags.help) return print(COMMANDS.serve.help);
  const cfg = serveConfig(flags);
  const logSink = (l: string) => console.error(l);
  const log = new Logger(cfg.logLevel, logSink);
  for (const w of cfg.warnings) log.warn(w.event, w.fields);
  let node;
  try {
    node = await startNode({ ...cfg, logSink });
  } catch (e) {
    if (e instanceof PortInUse || e instanceof DataDirInUse) throw new UsageError(e.message);
    throw e;
  }
  const stop = () => {
    node.close().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await node.finished;
  return 0;
}

async function info(args: string[]): Promise<number> {
  const flags = parse("info", args);
  if (flags.help) return print(COMMANDS.info.help);
  const cfg = serveConfig({
    data: flags.data,
    "env-file": flags["env-file"],
    port: flags.port,
    host: flags.host,
    "public-host": flags["public-host"],
  });
  // Only whether the node serves TLS matters here (the key file is not read).
  const tls = !!(flags["tls-cert"] ?? cfg.tls);
  secureDataDir(cfg.dataDir);
  const store = Store.open(join(cfg.dataDir, "socp.db"));
  try {
    const id = await loadOrCreateIdentity(store, cfg.dataDir, {
      passphrase: cfg.nodePassphrase,
      now: Date.now(),
    });
    // The same default as the node's (lib/net/node.ts): the listen host, or localhost for every interface.
    const host = cfg.publicHost ?? (cfg.host === "0.0.0.0" || cfg.host === "::" ? "localhost" : cfg.host);
    const port = cfg.port || 8765;
    const entry = bootstrapEntry(host, port, id.key.publicKey, tls);
    if (flags.entry) {
      console.log(entry);
      return 0;
    }
    console.log(`server_id:   ${id.serverId}`);
    console.log(`fingerprint: ${await fingerprint(id.key.spki)}`);
    console.log(`pubkey:      ${id.key.publicKey}`);
    console.log(`bootstrap:   ${entry}`);
    console.log("");
    if (tls) {
      console.log(
        "(the standard's YAML bootstrap file has no TLS field: pass the wss:// entry with --bootstrap)",
      );
    } else {
      console.log("bootstrap_servers:");
      console.log(`  - host: "${host}"`);
      console.log(`    port: ${port}`);
      console.log(`    pubkey: "${id.key.publicKey}"`);
    }
  } finally {
    store.close();
  }
  return 0;
}

function print(text: string): number {
  console.log(text.trimEnd());
  return 0;
}

/** Run the command line; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const [cmd, ...rest] = args;
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
      const topic = cmd === "help" ? rest[0] : undefined;
      if (topic && !COMMANDS[topic]) throw new UsageError(`unknown command "${topic}"`);
      return print(topic ? COMMANDS[topic].help : HELP);
    }
    if (cmd === "--version" || cmd === "-V" || cmd === "version") return print(`socp ${VERSION}`);
    switch (cmd) {
      case "serve":
        return await serve(rest);
      case "chat": {
        const flags = parse("chat", rest);
        if (flags.help) return print(COMMANDS.chat.help);
        if (!flags.server) {
          throw new UsageError("socp chat needs --server URL (e.g. --server ws://localhost:8765)");
        }
        const str = (v: unknown) => typeof v === "string" ? v : undefined;
        return await runChat({
          server: flags.server as string,
          name: str(flags.name),
          key: str(flags.key),
          downloads: str(flags.downloads),
        });
      }
      case "info":
        return await info(rest);
      default:
        throw new UsageError(
          cmd.startsWith("-")
            ? `unknown option "${cmd}"`
            : `unknown command "${cmd}"; commands: serve, chat, info, help`,
        );
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`socp: ${e.message}`);
      return 2;
    }
    console.error(`socp: ${(e as Error).message ?? e}`);
    return 1;
  }
}
