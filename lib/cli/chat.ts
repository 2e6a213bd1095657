/**
 * `socp chat`: the terminal client, a shell over the client core ({@linkcode SocpClient}). Reads commands and
 * plain text from stdin, prints what arrives with timestamps, reconnects after a drop, and keeps contacts beside
 * the key so DMs reach known users who are offline.
 *
 * @module
 */
import { join } from "node:path";
import { type ClientEvent, FileStopped, HelloRefused, SocpClient } from "../client/client.ts";
import { saveDownload } from "../client/downloads.ts";
import { createUser, openUser, readKeyFile, type UserIdentity } from "../client/keyfile.ts";
import { KeyFileError, MIN_PASSPHRASE_CHARS, WrongPassphrase } from "../crypto/keyfile.ts";
import { contactsPath, loadContacts, saveContacts, socpHome } from "./contacts.ts";
import { LineReader, readPassphrase } from "./lines.ts";
import { UsageError } from "./config.ts";

/** Help text for the chat commands. */
export const CHAT_HELP = `Commands:
  /list                  who is online: name, user id, home server, key fingerprint
  /tell <user> <text>    end-to-end encrypted message to a user (name, name#fingerprint or user id);
                         /tell <user> alone switches to that conversation
  /all <text>            message to everyone on the public channel (/all alone switches to it)
  <text>                 message to the current conversation (the last /tell or /all)
  /file <user> <path>    send a file to a user (/file all <path> or /allfile <path>: to everyone)
  /help                  this list
  /quit                  leave (Ctrl-D too)
`;

/** Largest file sent (the server's default limit). */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

/** Where a user's key file lives by default: $SOCP_HOME/keys/<name>.json (SOCP_HOME defaults to ~/.socp). */
export function defaultKeyPath(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_") || "default";
  return join(socpHome(), "keys", `${safe}.json`);
}

/** `HH:MM:SS` today, else `YYYY-MM-DD HH:MM:SS` (local time). */
export function stamp(ts: number, now = Date.now()): string {
  const d = new Date(ts);
  const p = (n: number) => String(n).padStart(2, "0");
  const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return new Date(now).toDateString() === d.toDateString()
    ? time
    : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${time}`;
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(n % 1048576 ? 1 : 0)} MiB`;
}

/** The terminal: lines out, with a prompt kept below them when stdin and stdout are terminals. */
class Screen {
  private readonly enc = new TextEncoder();
  readonly interactive = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  prompt = "> ";

  say(line: string): void {
    if (this.interactive) this.write(`\r\x1b[K${line}\n${this.prompt}`);
    else this.write(line + "\n");
  }

  showPrompt(): void {
    if (this.interactive) this.write(`\r\x1b[K${this.prompt}`);
  }

  private write(s: string): void {
    let b = this.enc.encode(s);
    while (b.length) b = b.subarray(Deno.stdout.writeSync(b));
  }
}

/** Ask for the passphrase of a new key twice (up to 3 tries); `null` when they never matched. */
async function newPassphrase(keyPath: string, err: (s: string) => void): Promise<string | null> {
  for (let i = 0; i < 3; i++) {
    const a = await readPassphrase(
      `new passphrase for ${keyPath} (at least ${MIN_PASSPHRASE_CHARS} characters): `,
    );
    if ([...a].length < MIN_PASSPHRASE_CHARS) {
      err(`the passphrase must have at least ${MIN_PASSPHRASE_CHARS} characters; try again`);
      continue;
    }
    const b = await readPassphrase("the same passphrase again: ");
    if (a === b) return a;
    err("the two passphrases differ; try again");
  }
  return null;
}

/** Can a WebSocket to `url` be opened (within 5 s)? An error message when not. */
async function reachable(url: string): Promise<string | null> {
  let ws: WebSocket;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    return (e as Error).message;
  }
  const r = await new Promise<string | null>((resolve) => {
    const t = setTimeout(() => resolve("no answer within 5 s"), 5000);
    ws.onopen = () => (clearTimeout(t), resolve(null));
    ws.onerror = () => (clearTimeout(t), resolve("connection refused or failed"));
  });
  await new Promise<void>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    const t = setTimeout(resolve, 1000);
    ws.onclose = () => (clearTimeout(t), resolve());
    try {
      ws.close();
    } catch {
      clearTimeout(t);
      resolve();
    }
  });
  return r;
}

/** Open the key file (3 passphrase tries on a terminal), or create it once the server is known reachable. */
async function identity(
  server: string,
  keyPath: string,
  name: string | undefined,
  err: (s: string) => void,
): Promise<UserIdentity | number> {
  const env = Deno.env.get("SOCP_PASSPHRASE");
  const text = await readKeyFile(keyPath);
  if (text === undefined) {
    const problem = await reachable(server);
    if (problem) {
      err(`cannot reach ${server} (${problem}); no key was created. Check --server and that the node runs.`);
      return 1;
    }
    const pass = env ?? await newPassphrase(keyPath, err);
    if (pass === null) throw new UsageError("no passphrase was confirmed; no key was created");
    if ([...pass].length < MIN_PASSPHRASE_CHARS) {
      throw new UsageError(
        `SOCP_PASSPHRASE is too short for a new key (at least ${MIN_PASSPHRASE_CHARS} characters); no key was created`,
      );
    }
    return await createUser(keyPath, pass, { displayName: name });
  }
  for (let i = 1;; i++) {
    const pass = env ?? await readPassphrase(`passphrase for ${keyPath}: `);
    try {
      return await openUser(keyPath, text, pass, { displayName: name });
    } catch (e) {
      if (e instanceof KeyFileError) throw new UsageError(`${keyPath}: ${e.message}`);
      if (!(e instanceof WrongPassphrase)) throw e;
      if (env !== undefined || i >= 3) {
        throw new UsageError(
          `${keyPath}: wrong passphrase${env !== undefined ? " (from SOCP_PASSPHRASE)" : ""}`,
        );
      }
      err("wrong passphrase; try again");
    }
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
  const screen = new Screen();
  const say = (line: string) => screen.say(line);
  const err = (line: string) => console.error(line);
  const keyPath = opts.key ?? defaultKeyPath(opts.name ?? "default");
  const me = await identity(opts.server, keyPath, opts.name, err);
  if (typeof me === "number") return me;
  if (me.created) say(`* created a new key in ${keyPath} (user id ${me.userId}, derived from the key)`);
  if (me.upgraded) {
    say(`* ${keyPath} was rewritten in the current format (its user id, key and name are now authenticated)`);
  }

  const cPath = contactsPath(keyPath);
  let client: SocpClient;
  try {
    client = await SocpClient.connect(opts.server, {
      userId: me.userId,
      key: me.key,
      displayName: me.displayName,
      contacts: await loadContacts(cPath),
      maxFileBytes: MAX_FILE_BYTES,
    });
  } catch (e) {
    if (e instanceof HelloRefused) err(`the server refused us: ${e.message}`);
    else err(`${(e as Error).message}`);
    return 1;
  }
  say(
    `* connected to ${opts.server} as ${
      me.displayName ?? me.userId
    } (${me.userId}); server ${client.serverId}`,
  );
  say("* type /help for commands");

  // Contacts: saved (at most one write at a time, the latest list) whenever one is learnt or changes.
  let saving: Promise<void> | null = null;
  let dirty = false;
  const persist = () => {
    dirty = true;
    if (saving) return;
    saving = (async () => {
      while (dirty) {
        dirty = false;
        await saveContacts(cPath, client.contacts()).catch((e) =>
          say(`! could not save contacts to ${cPath}: ${(e as Error).message}`)
        );
      }
      saving = null;
    })();
  };

  let failure: string | null = null;
  const failed = Promise.withResolvers<void>();
  let lost = false;
  let quitting = false;
  let current: { to: string; label: string } | null = null;
  const setPrompt = () => {
    screen.prompt = current ? `[${current.label}]> ` : "> ";
  };
  const flags = (verified: boolean, unencrypted?: boolean, warning?: string) =>
    `${unencrypted ? "  (UNENCRYPTED)" : ""}${verified ? "" : "  (UNVERIFIED signature)"}${
      warning ? `  (warning: ${warning})` : ""
    }`;

  const show = (e: ClientEvent) => {
    switch (e.kind) {
      case "dm":
        return say(
          `[${stamp(e.ts)}] [dm] ${e.fromLabel}: ${e.text}${flags(e.verified, e.unencrypted, e.warning)}`,
        );
      case "public":
        return say(
          `[${stamp(e.ts)}] [all] ${e.fromLabel}: ${e.text}${flags(e.verified, e.unencrypted, e.warning)}`,
        );
      case "joined":
        if (e.peer.userId !== me.userId) say(`* ${client.core.labelOf(e.peer.userId)} is online`);
        return;
      case "left":
        return say(`* ${client.core.labelOf(e.peer.userId)} left`);
      case "error":
        return say(`! ${e.code}: ${e.detail}`);
      case "warning":
        return say(`! ${e.detail}`);
      case "message": {
        const m = e.message;
        const to = m.kind === "public" ? "all" : m.toLabel;
        const echo = (note: string) =>
          say(
            `[${stamp(m.ts)}] [to ${to}] ${m.text}${note}${
              lostAt.has(m.id) ? "  (sent after reconnecting)" : ""
            }`,
          );
        if (m.state === "sent" && !m.resent) {
          echo(m.recipientOffline ? "  (offline: it will be delivered when they return)" : "");
        } else if (m.state === "accepted") {
          say(
            `* message to ${to}: accepted for delivery${
              m.recipientOffline ? " (queued until they return)" : ""
            }`,
          );
        } else if (m.state === "failed") say(`! message to ${to} was not delivered: ${m.error ?? "refused"}`);
        return;
      }
      case "contact":
        return persist();
      case "ack":
        if (e.what?.startsWith("file ")) say(`* ${e.what}: relayed whole`);
        return;
      case "fileStart":
        return say(
          `* ${client.core.labelOf(e.from)} is sending ${
            e.mode === "public" ? "everyone " : ""
          }"${e.name}" (${e.size} bytes)`,
        );
      case "fileProgress":
        return say(`* receiving "${e.name}": ${Math.floor((e.received / Math.max(1, e.size)) * 100)}%`);
      case "file": {
        const who = `"${e.name}" from ${e.fromName}`;
        if (!e.bytes) return say(`! refused ${who}: ${e.problem}`); // the core tells the sender
        saveDownload(downloads, e.name, e.bytes).then(
          (path) => say(`* saved ${who} to ${path}${e.verified ? "" : "  (UNVERIFIED sender signature)"}`),
          (er) => say(`! could not save ${who}: ${(er as Error).message}`),
        );
        return;
      }
      case "fileRefused":
        return say(`! sending "${e.name}" stopped: ${e.reason}`);
      case "closed":
        if (quitting) return;
        lost = true;
        return say(
          `* connection lost (${e.code}${e.reason ? ": " + e.reason : ""}); messages wait until it is back`,
        );
      case "reconnecting":
        return say(`* reconnecting in ${Math.round(e.inMs / 100) / 10} s (attempt ${e.attempt})`);
      case "ready":
        if (lost) say(`* reconnected to ${opts.server} (server ${e.serverId})`);
        lost = false;
        return;
      case "refused":
        failure = `the server refused us: ${e.code}: ${e.detail}`;
        failed.resolve();
        return;
      default:
        return;
    }
  };
  /** Messages written while the connection was down (their echo says so). */
  const lostAt = new Set<string>();
  for (const e of client.drainBuffered()) show(e);
  client.onEvent = show;

  const send = async (kind: "dm" | "public", target: string, text: string) => {
    const m = kind === "public" ? await client.all(text) : await client.tell(target, text);
    if (m.state === "sending") {
      lostAt.add(m.id);
      say(`* not connected: "${m.text.slice(0, 40)}" will be sent when the connection is back`);
    }
  };

  const lines = new LineReader(Deno.stdin.readable);
  screen.showPrompt();
  while (true) {
    const next = await Promise.race([lines.next(), failed.promise.then(() => undefined)]);
    if (next === undefined || next === null) break;
    const line = next.trim();
    if (!line) {
      screen.showPrompt();
      continue;
    }
    const [cmd] = line.split(/\s+/);
    try {
      if (cmd === "/quit" || cmd === "/exit") break;
      else if (cmd === "/help") say(CHAT_HELP.trimEnd());
      else if (cmd === "/list") {
        const peers = client.list();
        say(`* ${peers.length} online:`);
        for (const p of peers) {
          say(
            `  ${p.label}  ${p.userId}${p.userId === me.userId ? "  (you)" : ""}  @${p.serverId}  ${
              p.fingerprint || "(no key advertised)"
            }`,
          );
        }
      } else if (cmd === "/tell") {
        const m = /^\/tell\s+(\S+)(?:\s+([\s\S]+))?$/.exec(line);
        if (!m) say("usage: /tell <user> [text]");
        else {
          const peer = client.resolve(m[1]);
          current = { to: peer.userId, label: peer.label };
          setPrompt();
          if (m[2]) await send("dm", peer.userId, m[2]);
          else say(`* talking to ${peer.label}${peer.online ? "" : " (offline: messages are queued)"}`);
        }
      } else if (cmd === "/all") {
        const m = /^\/all(?:\s+([\s\S]+))?$/.exec(line);
        current = { to: "public", label: "all" };
        setPrompt();
        if (m?.[1]) await send("public", "public", m[1]);
        else say("* talking to everyone (the public channel)");
      } else if (cmd === "/file" || cmd === "/allfile") {
        const m = cmd === "/allfile" ? /^\/allfile\s+(.+)$/.exec(line) : /^\/file\s+(\S+)\s+(.+)$/.exec(line);
        if (!m) {
          say(
            cmd === "/allfile"
              ? "usage: /allfile <path>"
              : "usage: /file <user> <path>  (or /file all <path>)",
          );
        } else {
          const [target, rawPath] = cmd === "/allfile" ? ["all", m[1]] : [m[1], m[2]];
          await sendFile(client, target === "all" ? "public" : target, rawPath.trim(), say);
        }
      } else if (cmd.startsWith("/")) say(`! unknown command ${cmd}; /help lists them`);
      else if (!current) {
        say("! no conversation yet: /tell <user> <text> or /all <text> first; /help lists commands");
      } else await send(current.to === "public" ? "public" : "dm", current.to, line);
    } catch (e) {
      say(`! ${(e as Error).message}`);
    }
    if (failure) break;
    screen.showPrompt();
  }
  // Before leaving: let what is still on its way reach the server (an ACK for queued ones), at most 5 s.
  const unsettled = () =>
    client.messages().filter((m) =>
      m.state === "sending" || (m.state === "sent" && m.recipientOffline && m.kind === "dm")
    );
  for (let i = 0; i < 50 && client.connected && unsettled().length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const m of unsettled()) {
    say(`! not ${m.state === "sending" ? "sent" : "confirmed by the server"}: [to ${m.toLabel}] ${m.text}`);
  }
  quitting = true;
  await client.close();
  await saving;
  if (failure) {
    err(failure);
    return 1;
  }
  return 0;
}

/** `/file`: check the file, send it with progress, stop at the first refusal (said once, by the event). */
async function sendFile(
  client: SocpClient,
  target: string,
  path: string,
  say: (s: string) => void,
): Promise<void> {
  let size: number;
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) return say(`! not a file: ${path}`);
    size = st.size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return say(`! no such file: ${path}`);
    return say(`! cannot read ${path}: ${(e as Error).message}`);
  }
  const name = path.split(/[\\/]/).pop() || "file";
  if (size > MAX_FILE_BYTES) return say(`! "${name}" is ${mib(size)}; the limit is ${mib(MAX_FILE_BYTES)}`);
  const data = await Deno.readFile(path);
  const to = target === "public" ? "everyone" : client.resolve(target).label;
  say(`* sending "${name}" (${data.length} bytes) to ${to}...`);
  let shown = 0;
  try {
    await client.sendFile(target, name, data, (sent, total) => {
      const pct = total ? Math.floor((sent / total) * 10) * 10 : 100;
      if (pct > shown && pct < 100) {
        shown = pct;
        say(`* sending "${name}": ${pct}%`);
      }
    });
    say(`* sent "${name}" (100%); the server confirms once it is relayed`);
  } catch (e) {
    if (!(e instanceof FileStopped)) say(`! ${(e as Error).message}`);
  }
}
