/**
 * `socp chat`: the terminal client. Reads commands from stdin, prints what arrives.
 *
 * @module
 */
import { join } from "node:path";
import { type ClientEvent, HelloRefused, SocpClient } from "../client/client.ts";
import { saveDownload } from "../client/downloads.ts";
import { loadOrCreateUser } from "../client/keyfile.ts";
import { WrongPassphrase } from "../crypto/keyfile.ts";
import { LineReader, readPassphrase } from "./lines.ts";
import { UsageError } from "./config.ts";

/** Help text for the chat commands. */
export const CHAT_HELP = `Commands:
  /list                  who is online (sorted by name)
  /tell <user> <text>    end-to-end encrypted message to a user (display name or user id)
  /all <text>            message to everyone on the public channel
  /file <user> <path>    send a file to a user (/file all <path> or /allfile <path>: to everyone)
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
  const unverified = (ok: boolean, warning?: string) =>
    `${ok ? "" : "  (UNVERIFIED signature)"}${warning ? `  (warning: ${warning})` : ""}`;
  switch (e.kind) {
    case "dm":
      return `[dm] ${e.fromName}: ${e.text}${unverified(e.verified, e.warning)}`;
    case "public":
      return `[all] ${e.fromName}: ${e.text}${unverified(e.verified, e.warning)}`;
    case "joined":
      return `* ${e.peer.name} is online`;
    case "left":
      return `* ${e.peer.name} left`;
    case "error":
      return `! ${e.code}: ${e.detail}`;
    case "warning":
      return `! ${e.detail}`;
    case "ack":
      return e.what ? `* ${e.what}: accepted for delivery` : null;
    case "channel":
      return null;
    case "fileStart":
      return `* ${e.fromName} is sending ${
        e.mode === "public" ? "everyone " : ""
      }"${e.name}" (${e.size} bytes)`;
    case "fileProgress":
      return `* receiving "${e.name}": ${Math.floor((e.received / Math.max(1, e.size)) * 100)}%`;
    case "file":
      return null; // saved (or refused) by the chat loop
    case "closed":
      return `* disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`;
    default:
      return null;
  }
}

/** Run the chat until /quit or end of input. Returns the exit code. */
export async function runChat(
  opts: { server: string; name?: string; key?: string; downloads?: string },
): Promise<number> {
  const downloads = opts.downloads ?? "./socp-downloads";
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
    if (e.kind === "file") {
      const who = `"${e.name}" from ${e.fromName}`;
      if (!e.bytes) {
        say(`! refused ${who}: ${e.problem}`);
        // SOCP has no receiver-to-sender error frame: tell the sender in an (end-to-end encrypted) DM.
        client.tell(e.from, `[auto] could not accept "${e.name}": ${e.problem}`).catch(() => {});
        return;
      }
      saveDownload(downloads, e.name, e.bytes).then(
        (path) => say(`* saved ${who} to ${path}${e.verified ? "" : "  (UNVERIFIED sender signature)"}`),
        (err) => say(`! could not save ${who}: ${(err as Error).message}`),
      );
      return;
    }
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
    const [cmd] = line.split(/\s+/);
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
          const peer = client.resolve(m[1]);
          await client.tell(peer.userId, m[2]);
          say(
            `[to ${peer.name}] ${m[2]}${
              client.isOnline(peer.userId) ? "" : "  (offline: it will be delivered when they return)"
            }`,
          );
        }
      } else if (cmd === "/all") {
        const m = /^\/all\s+([\s\S]+)$/.exec(line);
        if (!m) say("usage: /all <text>");
        else {
          await client.all(m[1]);
          say(`[to all] ${m[1]}`);
        }
      } else if (cmd === "/file" || cmd === "/allfile") {
        const m = cmd === "/allfile" ? /^\/allfile\s+(.+)$/.exec(line) : /^\/file\s+(\S+)\s+(.+)$/.exec(line);
        if (!m) {
          say(
            cmd === "/allfile"
              ? "usage: /allfile <path>"
              : "usage: /file <user> <path>  (or /file all <path>)",
          );
        } else {
          const [target, path] = cmd === "/allfile" ? ["all", m[1]] : [m[1], m[2]];
          const data = await Deno.readFile(path.trim());
          const name = path.trim().split(/[\\/]/).pop() ?? "file";
          say(`* sending "${name}" (${data.length} bytes)...`);
          await client.sendFile(target === "all" ? "public" : target, name, data);
          say(`* sent "${name}"`);
        }
      } else if (cmd.startsWith("/")) say(`! unknown command ${cmd}; /help lists them`);
      else say("! start with a command, e.g. /tell <user> <text>; /help lists them");
    } catch (e) {
      say(`! ${(e as Error).message}`);
    }
  }
  await client.close();
  return 0;
}
