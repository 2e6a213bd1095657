/**
 * `socp chat`: the terminal client. Reads commands from stdin, prints what arrives.
 *
 * @module
 */
import { join } from "node:path";
import { type ClientEvent, HelloRefused, SocpClient } from "../client/client.ts";
import { loadOrCreateUser } from "../client/keyfile.ts";
import { WrongPassphrase } from "../crypto/keyfile.ts";
import { LineReader, readPassphrase } from "./lines.ts";
import { UsageError } from "./config.ts";

/** Help text for the chat commands. */
export const CHAT_HELP = `Commands:
  /list                  who is online (sorted by name)
  /tell <user> <text>    end-to-end encrypted message to a user (display name or user id)
  /help                  this list
  /quit                  leave
`;

/** Where a user's key file lives by default: $SOCP_HOME/keys/<name>.json (SOCP_HOME defaults to ~/.socp). */
export function defaultKeyPath(name: string): string {
  const home = Deno.env.get("SOCP_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".socp");
  const safe = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_") || "default";
  return join(home, "keys", `${safe}.json`);
}

function say(line: string): void {
  console.log(line);
}

function describe(e: ClientEvent): string | null {
  switch (e.kind) {
    case "dm":
      return `[dm] ${e.fromName}: ${e.text}${e.verified ? "" : "  (UNVERIFIED signature)"}${
        e.warning ? `  (warning: ${e.warning})` : ""
      }`;
    case "joined":
      return `* ${e.peer.name} is online`;
    case "left":
      return `* ${e.peer.name} left`;
    case "error":
      return `! ${e.code}: ${e.detail}`;
    case "warning":
      return `! ${e.detail}`;
    case "ack":
      return null;
    case "closed":
      return `* disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`;
  }
}

/** Run the chat until /quit or end of input. Returns the exit code. */
export async function runChat(opts: { server: string; name?: string; key?: string }): Promise<number> {
  if (!/^wss?:\/\//.test(opts.server)) {
    throw new UsageError(`--server must be a ws:// or wss:// URL, not "${opts.server}"`);
  }
  const name = opts.name;
  const keyPath = opts.key ?? defaultKeyPath(name ?? "default");
  const passphrase = Deno.env.get("SOCP_PASSPHRASE") ?? await readPassphrase(`passphrase for ${keyPath}: `);
  let me;
  try {
    me = await loadOrCreateUser(keyPath, passphrase, { displayName: name });
  } catch (e) {
    if (e instanceof WrongPassphrase) throw new UsageError(`${keyPath}: wrong passphrase`);
    throw e;
  }
  if (me.created) say(`* created a new key in ${keyPath} (user id ${me.userId})`);
  let client: SocpClient;
  try {
    client = await SocpClient.connect(opts.server, {
      userId: me.userId,
      key: me.key,
      displayName: me.displayName,
    });
  } catch (e) {
    if (e instanceof HelloRefused) {
      console.error(`the server refused us: ${e.message}`);
      return 1;
    }
    console.error(`${(e as Error).message}`);
    return 1;
  }
  say(
    `* connected to ${opts.server} as ${
      me.displayName ?? me.userId
    } (${me.userId}); server ${client.serverId}`,
  );
  say("* type /help for commands");
  let closed = false;
  const show = (e: ClientEvent) => {
    if (e.kind === "closed") closed = true;
    const line = describe(e);
    if (line) say(line);
  };
  for (const e of client.drainBuffered()) show(e);
  client.onEvent = show;

  const lines = new LineReader(Deno.stdin.readable);
  while (!closed) {
    const raw = await lines.next();
    if (raw === null) break;
    const line = raw.trim();
    if (!line) continue;
    const [cmd, ...rest] = line.split(/\s+/);
    try {
      if (cmd === "/quit" || cmd === "/exit") break;
      else if (cmd === "/help") say(CHAT_HELP.trimEnd());
      else if (cmd === "/list") {
        const peers = client.list();
        say(`* ${peers.length} online:`);
        for (const p of peers) say(`  ${p.name}  ${p.userId}${p.userId === me.userId ? "  (you)" : ""}`);
      } else if (cmd === "/tell") {
        const m = /^\/tell\s+(\S+)\s+([\s\S]+)$/.exec(line);
        if (!m) say("usage: /tell <user> <text>");
        else {
          await client.tell(m[1], m[2]);
          say(`[to ${client.resolve(m[1]).name}] ${m[2]}`);
        }
      } else if (cmd === "/all" || cmd === "/file") say(`! ${cmd} is not available on this version yet`);
      else if (cmd.startsWith("/")) say(`! unknown command ${cmd}; /help lists them`);
      else say("! start with a command, e.g. /tell <user> <text>; /help lists them");
      void rest;
    } catch (e) {
      say(`! ${(e as Error).message}`);
    }
  }
  await client.close();
  return 0;
}
