/**
 * `socp chat`: the terminal client, a shell over the client core ({@linkcode SocpClient}, made with `create` and
 * connected with `start`, like the web app's). Reads commands and plain text from stdin, prints what arrives
 * with timestamps, reconnects after a drop, and keeps contacts beside the key so DMs reach known users who are
 * offline. The first connection must succeed: a refusal or a failed first attempt is said and ends the chat.
 * Its parts: chat_identity.ts (the key file), chat_state.ts (the conversation on screen and what is kept in the
 * history), chat_events.ts (what arrives), chat_commands.ts (what the user types), screen.ts (the terminal).
 *
 * @module
 */
import { type ClientEvent, SocpClient } from "../client/client.ts";
import { ChatCommands, MAX_FILE_BYTES } from "./chat_commands.ts";
import { ChatEvents } from "./chat_events.ts";
import { defaultKeyPath, identity } from "./chat_identity.ts";
import { ChatState } from "./chat_state.ts";
import type { PrivateKey } from "../crypto/rsa.ts";
import { UsageError } from "./config.ts";
import { contactsPath, FileTrustStore } from "./contacts.ts";
import { historyDir, HistoryStore } from "./history.ts";
import { LineReader } from "./lines.ts";
import { own, type Safe, Screen, term } from "./screen.ts";
import { multiline } from "./term_safe.ts";

export { CHAT_HELP } from "./chat_commands.ts";

/** The history of the user whose key file is `keyPath`, or null (said) when it cannot be opened. */
async function openHistory(
  keyPath: string,
  me: { userId: string; key: PrivateKey },
  say: (l: Safe) => void,
): Promise<HistoryStore | null> {
  try {
    const history = await HistoryStore.open(historyDir(keyPath), me.userId, me.key);
    if (history.skipped) {
      say(term`! history: ${history.skipped} damaged record(s) skipped; the others are kept`);
    }
    let writeErrorSaid = false;
    history.onError = (e) => {
      if (!writeErrorSaid) say(term`! history: cannot write ${historyDir(keyPath)}: ${e.message}`);
      writeErrorSaid = true;
    };
    return history;
  } catch (e) {
    say(term`! history is off for this session: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Start `client` and wait for its first connection: null once the server accepted the hello, else what went
 * wrong (a refusal, or the first attempt failed or got no answer in time; the client is closed then). Later
 * drops are reconnected. The events that came meanwhile are left in `early`, in order, for the chat to show.
 */
async function firstConnection(client: SocpClient, early: ClientEvent[]): Promise<Safe | null> {
  const first = Promise.withResolvers<Safe | null>();
  client.onEvent = (e) => {
    early.push(e);
    if (e.kind === "ready") first.resolve(null);
    else if (e.kind === "refused") first.resolve(term`the server refused us: ${e.code}: ${e.detail}`);
    else if (e.kind === "reconnecting") first.resolve(term`${e.error ?? "cannot connect"}`);
  };
  client.start();
  const problem = await first.promise;
  client.onEvent = undefined;
  if (problem) await client.close();
  return problem;
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
  const history = await openHistory(keyPath, me, say);

  const store = new FileTrustStore(contactsPath(keyPath));
  const pinnedBefore = (await store.load(opts.server)).serverPin !== undefined;
  const client = await SocpClient.create(opts.server, {
    userId: me.userId,
    key: me.key,
    displayName: me.displayName,
    store,
    maxFileBytes: MAX_FILE_BYTES,
  });
  const early: ClientEvent[] = [];
  const problem = await firstConnection(client, early);
  if (problem) {
    err(problem);
    return 1;
  }
  say(
    term`* connected to ${opts.server} as ${
      me.displayName ?? me.userId
    } (${me.userId}); server ${client.serverId}`,
  );
  say(own("* type /help for commands"));

  const chat = new ChatState(screen, client, me, history, opts.server);
  const events = new ChatEvents(chat, downloads, pinnedBefore);
  for (const e of [...early, ...client.drainBuffered()]) events.show(e);
  client.onEvent = (e) => events.show(e);

  const lines = new LineReader(Deno.stdin.readable);
  const commands = new ChatCommands(chat, lines);
  screen.showPrompt();
  while (true) {
    const next = await Promise.race([lines.next(), chat.failed.promise.then(() => undefined)]);
    if (next === undefined || next === null) break;
    const line = next.trim();
    if (line && await commands.run(line) === "quit") break;
    if (chat.failure) break;
    screen.showPrompt();
  }
  await leave(chat);
  if (chat.failure) {
    err(chat.failure);
    return 1;
  }
  return 0;
}

/** Before leaving: let what is still on its way reach the server (an ACK for queued ones), at most 5 s; close. */
async function leave(chat: ChatState): Promise<void> {
  const client = chat.client;
  const unsettled = () =>
    client.messages().filter((m) =>
      m.state === "sending" || (m.state === "sent" && m.recipientOffline && m.kind === "dm")
    );
  for (let i = 0; i < 50 && client.connected && unsettled().length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const m of unsettled()) {
    chat.say(
      term`! not ${own(m.state === "sending" ? "sent" : "confirmed by the server")}: [to ${m.toLabel}] ${
        multiline(m.text)
      }`,
    );
  }
  chat.quitting = true;
  await client.close(); // waits for the store's writes too
  await chat.history?.flush();
}
