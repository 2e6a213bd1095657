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
import { contactsPath, FileTrustStore, socpHome } from "./contacts.ts";
import { historyDir, type HistoryMessage, HistoryStore } from "./history.ts";
import { LineReader, readPassphrase } from "./lines.ts";
import { multiline, term as termText } from "./term_safe.ts";
import { UsageError } from "./config.ts";
import { sha256Hex } from "../crypto/rsa.ts";

/** Help text for the chat commands. */
export const CHAT_HELP = `Commands:
  /list                  who is online: name, user id, home server, key fingerprint
  /tell <user> <text>    end-to-end encrypted message to a user (name, name#fingerprint or user id);
                         /tell <user> alone switches to that conversation
  /all <text>            message to everyone on the public channel (/all alone switches to it)
  <text>                 message to the current conversation (the last /tell, /all or /open)
  /open                  the conversations kept in your history, with unread counts
  /open <user>           switch to the conversation with <user> and show its last 20 messages
                         (/open all: the public channel; /chat <user> works too)
  /more                  20 earlier messages of the current conversation
  /forget <user>         delete the history of one conversation (/forget all: the public channel's);
                         asks y/N first
  /forget --all          delete all history (asks y/N first)
  /file <user> <path>    send a file to a user (/file all <path> or /allfile <path>: to everyone)
  /verify <user>         the safety code of your conversation and both key fingerprints: compare them
                         with <user> in person or on a call; /verify <user> yes marks <user> verified
  /unverify <user>       remove the verified mark
  /trust <user>          accept the new key of <user> after a key change (sending is blocked until then;
                         refused while <user> is marked verified: /unverify first)
  /trust-server          accept a new key of the server (after a server key warning)
  /help                  this list
  /quit                  leave (Ctrl-D too)
`;

/** Text that may be printed: built by {@linkcode term} or one of the client's own constants. */
type Safe = string & { readonly safe: unique symbol };

/** A line of output whose interpolated values (anything from the network) pass through the output filter. */
function term(strings: TemplateStringsArray, ...values: unknown[]): Safe {
  return termText(strings, ...values) as Safe;
}

/** The client's own constant text (never anything from the network). */
function own(text: string): Safe {
  return text as Safe;
}

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

/**
 * The terminal: lines out, with a prompt kept below them when stdin and stdout are terminals. It prints only
 * {@linkcode Safe} text: lines made by {@linkcode term} (every value from the network filtered) or the client's
 * own constants ({@linkcode own}).
 */
class Screen {
  private readonly enc = new TextEncoder();
  readonly interactive = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  prompt: Safe = own("> ");

  say(line: Safe): void {
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
  const say = (line: Safe) => screen.say(line);
  const err = (line: Safe) => console.error(line);
  const keyPath = opts.key ?? defaultKeyPath(opts.name ?? "default");
  const me = await identity(opts.server, keyPath, opts.name, (line) => err(term`${line}`));
  if (typeof me === "number") return me;
  if (me.created) say(term`* created a new key in ${keyPath} (user id ${me.userId}, derived from the key)`);
  if (me.upgraded) {
    say(
      term`* ${keyPath} was rewritten in the current format (its user id, key and name are now authenticated)`,
    );
  }

  let history: HistoryStore | null = null;
  try {
    history = await HistoryStore.open(historyDir(keyPath), me.userId, me.key);
    if (history.skipped) {
      say(term`! history: ${history.skipped} damaged record(s) skipped; the others are kept`);
    }
    let writeErrorSaid = false;
    history.onError = (e) => {
      if (!writeErrorSaid) say(term`! history: cannot write ${historyDir(keyPath)}: ${e.message}`);
      writeErrorSaid = true;
    };
  } catch (e) {
    say(term`! history is off for this session: ${(e as Error).message}`);
  }

  const store = new FileTrustStore(contactsPath(keyPath));
  const pinnedBefore = (await store.load(opts.server)).serverPin !== undefined;
  let client: SocpClient;
  try {
    client = await SocpClient.connect(opts.server, {
      userId: me.userId,
      key: me.key,
      displayName: me.displayName,
      store,
      maxFileBytes: MAX_FILE_BYTES,
    });
  } catch (e) {
    if (e instanceof HelloRefused) err(term`the server refused us: ${e.message}`);
    else err(term`${(e as Error).message}`);
    return 1;
  }
  say(
    term`* connected to ${opts.server} as ${
      me.displayName ?? me.userId
    } (${me.userId}); server ${client.serverId}`,
  );
  say(own("* type /help for commands"));

  let failure: Safe | null = null;
  const failed = Promise.withResolvers<void>();
  let lost = false;
  let quitting = false;
  let current: { to: string; label: string } | null = null;
  /** How many of the newest messages of the current conversation are shown already (for /more). */
  let shownBack = 0;
  const setPrompt = () => {
    screen.prompt = current ? term`[${current.label}]> ` : own("> ");
  };
  /** How a received message's sender is shown: the name only when the signature is by their pinned key. */
  const sender = (e: { fromLabel: string; verified: boolean; unencrypted?: boolean; warning?: string }) =>
    e.verified
      ? term`${e.fromLabel}${e.unencrypted ? "  (UNENCRYPTED)" : ""}${
        e.warning ? `  (note: ${e.warning})` : ""
      }`
      : term`[UNVERIFIED — claims to be ${e.fromLabel}${e.unencrypted ? ", UNENCRYPTED" : ""}${
        e.warning ? `: ${e.warning}` : ""
      }]`;
  const label = (userId: string) => client.core.labelOf(userId);

  /** Keep a received message or file in the history (read at once when its conversation is the current one). */
  const keep = (m: Omit<HistoryMessage, "id" | "dir" | "state">) => {
    if (!history) return;
    history.add({ ...m, id: crypto.randomUUID(), dir: "in", state: "received" });
    if (current && current.to === m.conv) {
      history.markRead(m.conv);
      shownBack++; // shown live: /more continues before what was paged already
    }
  };
  /** Keep one of our messages, or its new state. */
  const keepOurs = (
    m: {
      id: string;
      kind: "dm" | "public";
      to: string;
      toLabel: string;
      text: string;
      ts: number;
      state: string;
    },
  ) => {
    if (!history) return;
    if (history.has(m.id)) return history.setState(m.id, m.state);
    if (current && current.to === (m.kind === "public" ? "public" : m.to)) shownBack++;
    history.add({
      id: m.id,
      conv: m.kind === "public" ? "public" : m.to,
      convLabel: m.kind === "public" ? "all" : m.toLabel,
      ts: m.ts,
      dir: "out",
      from: me.userId,
      fromLabel: "you",
      text: m.text,
      verified: true,
      state: m.state,
    });
  };

  const show = (e: ClientEvent) => {
    switch (e.kind) {
      case "dm":
        keep({
          conv: e.from,
          convLabel: e.fromLabel,
          ts: e.ts,
          from: e.from,
          fromLabel: e.fromLabel,
          text: e.text,
          verified: e.verified,
          unencrypted: e.unencrypted,
        });
        return say(term`[${stamp(e.ts)}] [dm] ${own(sender(e))}: ${multiline(e.text)}`);
      case "public":
        keep({
          conv: "public",
          convLabel: "all",
          ts: e.ts,
          from: e.from,
          fromLabel: e.fromLabel,
          text: e.text,
          verified: e.verified,
          unencrypted: e.unencrypted,
        });
        return say(term`[${stamp(e.ts)}] [all] ${own(sender(e))}: ${multiline(e.text)}`);
      case "joined":
        if (e.peer.userId !== me.userId) say(term`* ${label(e.peer.userId)} is online`);
        return;
      case "left":
        return say(term`* ${label(e.peer.userId)} left`);
      case "error":
        return say(term`! ${e.code}: ${e.detail}`);
      case "warning":
        return say(term`! ${e.detail}`);
      case "keyChanged":
        if (e.verified) {
          return say(
            term`! STOP: ${e.label} was VERIFIED, and a different key is now presented for them (pinned ${e.oldFingerprint}, new ${e.newFingerprint}). Messages to ${e.label} are blocked. This is what an impersonation looks like: talk to ${e.label} another way before anything else; only if they really changed their key: /unverify ${e.label}, then /trust ${e.label}`,
          );
        }
        return say(
          term`! WARNING: the key of ${e.label} changed (pinned ${e.oldFingerprint}, new ${e.newFingerprint}). Messages to ${e.label} are blocked until you accept it: compare the safety code with ${e.label} (/verify ${e.label}), then /trust ${e.label}`,
        );
      case "keyReplaced":
        return say(
          term`* ${e.label}: the key now presented (${e.newFingerprint}) is the one their user id is derived from; it replaced the old pin (${e.oldFingerprint}): a resolved conflict`,
        );
      case "keyRejected":
        return say(
          term`! ignored another key presented for ${e.label} (${e.rejectedFingerprint}): their user id is derived from the pinned key (${e.fingerprint}), so only that key is theirs`,
        );
      case "keyTrusted":
        return say(
          term`* accepted the new key of ${e.label} (${e.fingerprint}); messages to them are sent again`,
        );
      case "serverPin":
        if (!pinnedBefore && !serverPinSaid) {
          serverPinSaid = true;
          say(term`* pinned the server's key at first contact: ${e.pin.fingerprint}`);
        }
        return;
      case "serverKeyChanged":
        return say(
          term`! WARNING: the server at ${opts.server} presents ${
            e.newFingerprint ? `another key (${e.newFingerprint})` : "no key"
          } than the one pinned at first contact (${e.oldFingerprint}). It may not be your server. Public channel keys from it are refused. If its operator really changed the key: /trust-server`,
        );
      case "channelKeyChanged":
        return say(
          term`! the public channel key changed (creator key ${e.oldFingerprint} -> ${e.newFingerprint}), handed out by your server; earlier members may not read new public messages`,
        );
      case "message": {
        const m = e.message;
        keepOurs(m);
        const to = m.kind === "public" ? "all" : m.toLabel;
        const echo = (note: string) =>
          say(
            term`[${stamp(m.ts)}] [to ${to}] ${multiline(m.text)}${own(note)}${
              own(lostAt.has(m.id) ? "  (sent after reconnecting)" : "")
            }`,
          );
        if (m.state === "sent" && !m.resent) {
          echo(m.recipientOffline ? "  (offline: it will be delivered when they return)" : "");
        } else if (m.state === "accepted") {
          say(
            term`* message to ${to}: accepted for delivery${
              own(m.recipientOffline ? " (queued until they return)" : "")
            }`,
          );
        } else if (m.state === "failed") {
          say(term`! message to ${to} was not delivered: ${m.error ?? "refused"}`);
        }
        return;
      }
      case "ack":
        if (e.what?.startsWith("file ")) say(term`* ${e.what}: relayed whole`);
        return;
      case "fileStart":
        return say(
          term`* ${label(e.from)} is sending ${
            own(e.mode === "public" ? "everyone " : "")
          }"${e.name}" (${e.size} bytes)`,
        );
      case "fileProgress":
        return say(term`* receiving "${e.name}": ${Math.floor((e.received / Math.max(1, e.size)) * 100)}%`);
      case "file": {
        const who = term`"${e.name}" from ${e.fromName}`;
        const keepFile = (saved?: string, problem?: string) =>
          keep({
            conv: e.mode === "public" ? "public" : e.from,
            convLabel: e.mode === "public" ? "all" : label(e.from),
            ts: Date.now(),
            from: e.from,
            fromLabel: label(e.from),
            file: { name: e.name, size: e.bytes?.length ?? 0, sha256: e.sha256, saved, problem },
            verified: e.verified,
          });
        if (!e.bytes) {
          keepFile(undefined, e.problem ?? "refused");
          return say(term`! refused ${own(who)}: ${e.problem}`); // the core tells the sender
        }
        saveDownload(downloads, e.name, e.bytes).then(
          (path) => {
            keepFile(path);
            say(
              term`* saved ${own(who)} to ${path}${own(e.verified ? "" : "  (UNVERIFIED sender signature)")}`,
            );
          },
          (er) => {
            keepFile(undefined, `not saved: ${(er as Error).message}`);
            say(term`! could not save ${own(who)}: ${(er as Error).message}`);
          },
        );
        return;
      }
      case "fileRefused":
        return say(term`! sending "${e.name}" stopped: ${e.reason}`);
      case "closed":
        if (quitting) return;
        lost = true;
        return say(
          term`* connection lost (${e.code}${
            e.reason ? ": " + e.reason : ""
          }); messages wait until it is back`,
        );
      case "reconnecting":
        return say(term`* reconnecting in ${Math.round(e.inMs / 100) / 10} s (attempt ${e.attempt})`);
      case "ready":
        if (lost) say(term`* reconnected to ${opts.server} (server ${e.serverId})`);
        lost = false;
        return;
      case "refused":
        failure = e.code === "TAKEN_OVER"
          ? term`${e.detail}; not reconnecting`
          : term`the server refused us: ${e.code}: ${e.detail}`;
        failed.resolve();
        return;
      default:
        return;
    }
  };
  let serverPinSaid = false;
  /** Messages written while the connection was down (their echo says so). */
  const lostAt = new Set<string>();
  for (const e of client.drainBuffered()) show(e);
  client.onEvent = show;

  const send = async (kind: "dm" | "public", target: string, text: string) => {
    const m = kind === "public" ? await client.all(text) : await client.tell(target, text);
    keepOurs(m);
    if (m.state === "sending") {
      lostAt.add(m.id);
      say(term`* not connected: "${m.text.slice(0, 40)}" will be sent when the connection is back`);
    }
  };

  /** `/verify`: the safety code, both fingerprints, and what is known of the key. */
  const verify = (target: string, yes: boolean) => {
    if (yes) {
      const c = client.setVerified(target, true);
      return say(term`* ${label(c.userId)} is marked verified; a change of their key will be a hard stop`);
    }
    const t = client.core.trustInfo(target);
    const what = t.trust === "derived"
      ? "their user id is derived from this key (verified by construction)"
      : t.trust === "verified"
      ? "you marked them verified"
      : t.trust === "changed"
      ? "their key CHANGED and is not accepted"
      : "trusted on first use (not verified)";
    say(term`* safety code with ${t.label}:`);
    say(term`    ${t.safetyCode}`);
    say(term`  your key:        ${client.core.fingerprint}`);
    say(term`  ${t.label}'s key: ${t.fingerprint}  (${what})`);
    if (t.pending) {
      say(term`  NEW key offered: ${t.pending.fingerprint}; safety code with it:`);
      say(term`    ${t.pending.safetyCode}`);
    }
    say(
      term`  compare the code with ${t.label} in person or on a call (they see the same with /verify); if it matches: /verify ${t.label} yes`,
    );
  };

  const PAGE = 20;
  /** One kept message as a line. */
  /** One kept message as a line (or lines: a message's extra lines are indented, as when it arrived). */
  const historyLine = (m: HistoryMessage): Safe => {
    // Each part is made by `term` (the text with `multiline`), then joined as they are: filtering again would
    // turn the continuation's newline into \u{a}.
    const what: string = m.file
      ? term`file "${m.file.name}" (${m.file.size} bytes${
        own(m.file.sha256 ? `, sha256 ${m.file.sha256.slice(0, 16)}…` : "")
      })` + (m.file.saved ? term` saved to ${m.file.saved}` : "") +
        (m.file.problem ? term` refused: ${m.file.problem}` : "")
      : term`${multiline(m.text ?? "")}`;
    if (m.dir === "out") {
      const note = m.state === "failed" ? "  (not delivered)" : m.state === "sending" ? "  (not sent)" : "";
      return own(term`[${stamp(m.ts)}] [to ${m.convLabel}] ` + what + note);
    }
    const who = sender({ fromLabel: m.fromLabel, verified: m.verified, unencrypted: m.unencrypted });
    return own(term`[${stamp(m.ts)}] [${m.conv === "public" ? "all" : "dm"}] ` + who + ": " + what);
  };
  /** Show the page of the current conversation before the `shownBack` newest; false when there is none. */
  const showPage = (first: boolean) => {
    if (!history || !current) return;
    const conv = current.to;
    const { messages, total } = history.page(conv, shownBack, PAGE);
    const name = conv === "public" ? "the public channel" : current.label;
    if (total === 0) return say(term`* no history with ${name} yet`);
    if (!messages.length) return say(term`* that is all: ${total} message(s) kept with ${name}`);
    const from = total - shownBack - messages.length + 1;
    say(
      term`* ${own(first ? "history" : "earlier")} with ${name}: ${from}-${
        from + messages.length - 1
      } of ${total}${own(from > 1 ? " (/more for earlier)" : "")}`,
    );
    for (const m of messages) say(historyLine(m));
    shownBack += messages.length;
    history.markRead(conv);
  };
  const switchTo = (to: string, name: string) => {
    current = { to, label: name };
    shownBack = 0;
    setPrompt();
    showPage(true);
  };
  /** The conversation `target` names: "all", a known user, or one kept in the history. */
  const conversationOf = (target: string): { to: string; label: string } => {
    if (target === "all" || target === "public") return { to: "public", label: "all" };
    try {
      const peer = client.resolve(target);
      return { to: peer.userId, label: peer.label };
    } catch (e) {
      const conv = history?.findByLabel(target);
      if (conv) return { to: conv, label: history!.conversations().find((c) => c.conv === conv)!.label };
      throw e;
    }
  };

  const lines = new LineReader(Deno.stdin.readable);
  /** Ask a y/N question on the terminal (the next line answers; anything but y or yes is no). */
  const confirm = async (question: Safe): Promise<boolean> => {
    say(term`${own(question)} (y/N)`);
    const answer = await lines.next();
    return typeof answer === "string" && /^\s*y(es)?\s*$/i.test(answer);
  };
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
      else if (cmd === "/help") say(own(CHAT_HELP.trimEnd()));
      else if (cmd === "/list") {
        const peers = client.list();
        say(term`* ${peers.length} online:`);
        for (const p of peers) {
          const mark = p.trust === "derived"
            ? "  (id derived from key)"
            : p.trust === "verified"
            ? "  (verified)"
            : p.trust === "changed"
            ? "  (KEY CHANGED: not the pinned key)"
            : "";
          say(
            term`  ${p.label}  ${p.userId}${own(p.userId === me.userId ? "  (you)" : "")}  @${p.serverId}  ${
              p.fingerprint || "(no key advertised)"
            }${own(mark)}`,
          );
        }
      } else if (cmd === "/tell") {
        const m = /^\/tell\s+(\S+)(?:\s+([\s\S]+))?$/.exec(line);
        if (!m) say(own("usage: /tell <user> [text]"));
        else {
          const peer = client.resolve(m[1]);
          current = { to: peer.userId, label: peer.label };
          shownBack = 0;
          setPrompt();
          if (m[2]) await send("dm", peer.userId, m[2]);
          else {
            say(
              term`* talking to ${peer.label}${own(peer.online ? "" : " (offline: messages are queued)")}`,
            );
            switchTo(peer.userId, peer.label);
          }
        }
      } else if (cmd === "/all") {
        const m = /^\/all(?:\s+([\s\S]+))?$/.exec(line);
        current = { to: "public", label: "all" };
        shownBack = 0;
        setPrompt();
        if (m?.[1]) await send("public", "public", m[1]);
        else {
          say(own("* talking to everyone (the public channel)"));
          switchTo("public", "all");
        }
      } else if (cmd === "/open" || cmd === "/chat") {
        const m = /^\/(?:open|chat)(?:\s+(\S+))?$/.exec(line);
        if (!m) say(own("usage: /open [<user> | all]"));
        else if (!history) say(own("! history is off for this session"));
        else if (m[1]) {
          const c = conversationOf(m[1]);
          say(term`* talking to ${c.to === "public" ? "everyone (the public channel)" : c.label}`);
          switchTo(c.to, c.label);
        } else {
          const list = history.conversations();
          if (!list.length) say(own("* no conversations kept yet"));
          else say(term`* ${list.length} conversation(s), newest first (/open <name> to switch):`);
          for (const c of list) {
            say(
              term`  ${c.label}${own(c.conv === "public" ? " (public channel)" : "")}  ${c.count} message(s)${
                own(c.unread ? `, ${c.unread} unread` : "")
              }, last ${stamp(c.lastTs)}${own(current?.to === c.conv ? "  (current)" : "")}`,
            );
          }
        }
      } else if (cmd === "/more") {
        if (!history) say(own("! history is off for this session"));
        else if (!current) say(own("! no conversation yet: /open <user> first"));
        else showPage(false);
      } else if (cmd === "/forget") {
        const m = /^\/forget\s+(\S+)$/.exec(line);
        if (!m) say(own("usage: /forget <user> | /forget all | /forget --all"));
        else if (!history) say(own("! history is off for this session"));
        else if (m[1] === "--all") {
          const n = history.conversations().length;
          if (await confirm(term`* delete ALL history (${n} conversation(s)) for good?`)) {
            await history.forgetAll();
            shownBack = 0;
            say(own("* all history deleted"));
          } else say(own("* kept"));
        } else {
          const c = conversationOf(m[1]);
          const n = history.page(c.to, 0, 0).total;
          const name = c.to === "public" ? "the public channel" : c.label;
          if (await confirm(term`* delete the ${n} kept message(s) with ${name} for good?`)) {
            await history.forget(c.to);
            if (current?.to === c.to) shownBack = 0;
            say(term`* history with ${name} deleted`);
          } else say(own("* kept"));
        }
      } else if (cmd === "/file" || cmd === "/allfile") {
        const m = cmd === "/allfile" ? /^\/allfile\s+(.+)$/.exec(line) : /^\/file\s+(\S+)\s+(.+)$/.exec(line);
        if (!m) {
          say(
            own(
              cmd === "/allfile"
                ? "usage: /allfile <path>"
                : "usage: /file <user> <path>  (or /file all <path>)",
            ),
          );
        } else {
          const [target, rawPath] = cmd === "/allfile" ? ["all", m[1]] : [m[1], m[2]];
          await sendFile(client, target === "all" ? "public" : target, rawPath.trim(), say, (f) => {
            if (!history) return;
            const c = conversationOf(target);
            history.add({
              id: crypto.randomUUID(),
              conv: c.to,
              convLabel: c.label,
              ts: Date.now(),
              dir: "out",
              from: me.userId,
              fromLabel: "you",
              file: f,
              verified: true,
              state: "sent",
            });
          });
        }
      } else if (cmd === "/verify") {
        const m = /^\/verify\s+(\S+)(?:\s+(yes))?$/.exec(line);
        if (!m) say(own("usage: /verify <user>  (then /verify <user> yes once the safety code matched)"));
        else verify(m[1], !!m[2]);
      } else if (cmd === "/unverify") {
        const m = /^\/unverify\s+(\S+)$/.exec(line);
        if (!m) say(own("usage: /unverify <user>"));
        else {
          const c = client.setVerified(m[1], false);
          say(term`* ${label(c.userId)} is no longer marked verified`);
        }
      } else if (cmd === "/trust") {
        const m = /^\/trust\s+(\S+)$/.exec(line);
        if (!m) say(own("usage: /trust <user>  (accept the new key of <user> after a key change)"));
        else client.trustKey(m[1]);
      } else if (cmd === "/trust-server") {
        const pin = client.trustServerKey();
        say(term`* the server's key ${pin.fingerprint} is now the pinned one`);
      } else if (cmd.startsWith("/")) say(term`! unknown command ${cmd}; /help lists them`);
      else if (!current) {
        say(own("! no conversation yet: /tell <user> <text> or /all <text> first; /help lists commands"));
      } else await send(current.to === "public" ? "public" : "dm", current.to, line);
    } catch (e) {
      say(term`! ${(e as Error).message}`);
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
    say(
      term`! not ${own(m.state === "sending" ? "sent" : "confirmed by the server")}: [to ${m.toLabel}] ${
        multiline(m.text)
      }`,
    );
  }
  quitting = true;
  await client.close(); // waits for the store's writes too
  await history?.flush();
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
  say: (s: Safe) => void,
  sent: (file: { name: string; size: number; sha256: string }) => void,
): Promise<void> {
  let size: number;
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) return say(term`! not a file: ${path}`);
    size = st.size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return say(term`! no such file: ${path}`);
    return say(term`! cannot read ${path}: ${(e as Error).message}`);
  }
  const name = path.split(/[\\/]/).pop() || "file";
  if (size > MAX_FILE_BYTES) {
    return say(term`! "${name}" is ${mib(size)}; the limit is ${mib(MAX_FILE_BYTES)}`);
  }
  const data = await Deno.readFile(path);
  const to = target === "public" ? "everyone" : client.resolve(target).label;
  say(term`* sending "${name}" (${data.length} bytes) to ${to}...`);
  let shown = 0;
  try {
    await client.sendFile(target, name, data, (sent, total) => {
      const pct = total ? Math.floor((sent / total) * 10) * 10 : 100;
      if (pct > shown && pct < 100) {
        shown = pct;
        say(term`* sending "${name}": ${pct}%`);
      }
    });
    say(term`* sent "${name}" (100%); the server confirms once it is relayed`);
    sent({ name, size: data.length, sha256: await sha256Hex(data) });
  } catch (e) {
    if (!(e instanceof FileStopped)) say(term`! ${(e as Error).message}`);
  }
}
