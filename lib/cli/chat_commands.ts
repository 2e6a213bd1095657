/**
 * The terminal chat's commands (`/tell`, `/all`, `/open`, `/more`, `/forget`, `/file`, `/verify`, `/trust`, …)
 * and plain text to the current conversation. {@linkcode CHAT_HELP} lists them.
 *
 * @module
 */
import { FileStopped, type SocpClient } from "../client/client.ts";
import { sha256Hex } from "../crypto/rsa.ts";
import type { ChatState } from "./chat_state.ts";
import type { LineReader } from "./lines.ts";
import { mib, own, type Safe, stamp, term } from "./screen.ts";

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

/** Largest file sent (the server's default limit). */
export const MAX_FILE_BYTES = 16 * 1024 * 1024;

/** The commands of one chat. */
export class ChatCommands {
  /** Commands of chat `c`; `lines` answers its questions (y/N). */
  constructor(private readonly c: ChatState, private readonly lines: LineReader) {}

  /** Run one line (a command or text); "quit" when the user leaves. Errors are said, not thrown. */
  async run(line: string): Promise<"quit" | void> {
    const c = this.c;
    const [cmd] = line.split(/\s+/);
    try {
      if (cmd === "/quit" || cmd === "/exit") return "quit";
      else if (cmd === "/help") c.say(own(CHAT_HELP.trimEnd()));
      else if (cmd === "/list") this.list();
      else if (cmd === "/tell") await this.tell(line);
      else if (cmd === "/all") await this.all(line);
      else if (cmd === "/open" || cmd === "/chat") this.open(line);
      else if (cmd === "/more") {
        if (!c.history) c.say(own("! history is off for this session"));
        else if (!c.current) c.say(own("! no conversation yet: /open <user> first"));
        else c.showPage(false);
      } else if (cmd === "/forget") await this.forget(line);
      else if (cmd === "/file" || cmd === "/allfile") await this.file(cmd, line);
      else if (cmd === "/verify") {
        const m = /^\/verify\s+(\S+)(?:\s+(yes))?$/.exec(line);
        if (!m) c.say(own("usage: /verify <user>  (then /verify <user> yes once the safety code matched)"));
        else this.verify(m[1], !!m[2]);
      } else if (cmd === "/unverify") {
        const m = /^\/unverify\s+(\S+)$/.exec(line);
        if (!m) c.say(own("usage: /unverify <user>"));
        else {
          const who = c.client.setVerified(m[1], false);
          c.say(term`* ${c.label(who.userId)} is no longer marked verified`);
        }
      } else if (cmd === "/trust") {
        const m = /^\/trust\s+(\S+)$/.exec(line);
        if (!m) c.say(own("usage: /trust <user>  (accept the new key of <user> after a key change)"));
        else c.client.trustKey(m[1]);
      } else if (cmd === "/trust-server") {
        const pin = c.client.trustServerKey();
        c.say(term`* the server's key ${pin.fingerprint} is now the pinned one`);
      } else if (cmd.startsWith("/")) c.say(term`! unknown command ${cmd}; /help lists them`);
      else if (!c.current) {
        c.say(own("! no conversation yet: /tell <user> <text> or /all <text> first; /help lists commands"));
      } else await this.send(c.current.to === "public" ? "public" : "dm", c.current.to, line);
    } catch (e) {
      c.say(term`! ${(e as Error).message}`);
    }
  }

  /** Send a text message (kept in the history; said when it waits for the connection). */
  private async send(kind: "dm" | "public", target: string, text: string): Promise<void> {
    const c = this.c;
    const m = kind === "public" ? await c.client.all(text) : await c.client.tell(target, text);
    c.keepOurs(m);
    if (m.state === "sending") {
      c.lostAt.add(m.id);
      c.say(term`* not connected: "${m.text.slice(0, 40)}" will be sent when the connection is back`);
    }
  }

  /** `/list`: who is online. */
  private list(): void {
    const c = this.c;
    const peers = c.client.list();
    c.say(term`* ${peers.length} online:`);
    for (const p of peers) {
      const mark = p.trust === "derived"
        ? "  (id derived from key)"
        : p.trust === "verified"
        ? "  (verified)"
        : p.trust === "changed"
        ? "  (KEY CHANGED: not the pinned key)"
        : "";
      c.say(
        term`  ${p.label}  ${p.userId}${own(p.userId === c.me.userId ? "  (you)" : "")}  @${p.serverId}  ${
          p.fingerprint || "(no key advertised)"
        }${own(mark)}`,
      );
    }
  }

  /** `/tell <user> [text]`. */
  private async tell(line: string): Promise<void> {
    const c = this.c;
    const m = /^\/tell\s+(\S+)(?:\s+([\s\S]+))?$/.exec(line);
    if (!m) return c.say(own("usage: /tell <user> [text]"));
    const peer = c.client.resolve(m[1]);
    const to = { to: peer.userId, label: peer.label };
    c.talkTo(to);
    if (m[2]) return await this.send("dm", peer.userId, m[2]);
    c.say(term`* talking to ${peer.label}${own(peer.online ? "" : " (offline: messages are queued)")}`);
    c.switchTo(to);
  }

  /** `/all [text]`. */
  private async all(line: string): Promise<void> {
    const c = this.c;
    const m = /^\/all(?:\s+([\s\S]+))?$/.exec(line);
    const to = { to: "public", label: "all" };
    c.talkTo(to);
    if (m?.[1]) return await this.send("public", "public", m[1]);
    c.say(own("* talking to everyone (the public channel)"));
    c.switchTo(to);
  }

  /** `/open [<user> | all]`: switch conversation, or list those kept. */
  private open(line: string): void {
    const c = this.c;
    const m = /^\/(?:open|chat)(?:\s+(\S+))?$/.exec(line);
    if (!m) return c.say(own("usage: /open [<user> | all]"));
    if (!c.history) return c.say(own("! history is off for this session"));
    if (m[1]) {
      const to = c.conversationOf(m[1]);
      c.say(term`* talking to ${to.to === "public" ? "everyone (the public channel)" : to.label}`);
      return c.switchTo(to);
    }
    const list = c.history.conversations();
    if (!list.length) c.say(own("* no conversations kept yet"));
    else c.say(term`* ${list.length} conversation(s), newest first (/open <name> to switch):`);
    for (const k of list) {
      c.say(
        term`  ${k.label}${own(k.conv === "public" ? " (public channel)" : "")}  ${k.count} message(s)${
          own(k.unread ? `, ${k.unread} unread` : "")
        }, last ${stamp(k.lastTs)}${own(c.current?.to === k.conv ? "  (current)" : "")}`,
      );
    }
  }

  /** Ask a y/N question on the terminal (the next line answers; anything but y or yes is no). */
  private async confirm(question: Safe): Promise<boolean> {
    this.c.say(term`${own(question)} (y/N)`);
    const answer = await this.lines.next();
    return typeof answer === "string" && /^\s*y(es)?\s*$/i.test(answer);
  }

  /** `/forget <user> | all | --all`: delete kept history, after a y/N question. */
  private async forget(line: string): Promise<void> {
    const c = this.c;
    const m = /^\/forget\s+(\S+)$/.exec(line);
    const history = c.history;
    if (!m) return c.say(own("usage: /forget <user> | /forget all | /forget --all"));
    if (!history) return c.say(own("! history is off for this session"));
    if (m[1] === "--all") {
      const n = history.conversations().length;
      if (!await this.confirm(term`* delete ALL history (${n} conversation(s)) for good?`)) {
        return c.say(own("* kept"));
      }
      await history.forgetAll();
      c.shownBack = 0;
      return c.say(own("* all history deleted"));
    }
    const to = c.conversationOf(m[1]);
    const n = history.page(to.to, 0, 0).total;
    const name = to.to === "public" ? "the public channel" : to.label;
    if (!await this.confirm(term`* delete the ${n} kept message(s) with ${name} for good?`)) {
      return c.say(own("* kept"));
    }
    await history.forget(to.to);
    if (c.current?.to === to.to) c.shownBack = 0;
    c.say(term`* history with ${name} deleted`);
  }

  /** `/file <user> <path>`, `/file all <path>`, `/allfile <path>`. */
  private async file(cmd: string, line: string): Promise<void> {
    const c = this.c;
    const m = cmd === "/allfile" ? /^\/allfile\s+(.+)$/.exec(line) : /^\/file\s+(\S+)\s+(.+)$/.exec(line);
    if (!m) {
      return c.say(
        own(
          cmd === "/allfile" ? "usage: /allfile <path>" : "usage: /file <user> <path>  (or /file all <path>)",
        ),
      );
    }
    const [target, rawPath] = cmd === "/allfile" ? ["all", m[1]] : [m[1], m[2]];
    await sendFile(c.client, target === "all" ? "public" : target, rawPath.trim(), (l) => c.say(l), (f) => {
      if (!c.history) return;
      const to = c.conversationOf(target);
      c.history.add({
        id: crypto.randomUUID(),
        conv: to.to,
        convLabel: to.label,
        ts: Date.now(),
        dir: "out",
        from: c.me.userId,
        fromLabel: "you",
        file: f,
        verified: true,
        state: "sent",
      });
    });
  }

  /** `/verify`: the safety code, both fingerprints, and what is known of the key. */
  private verify(target: string, yes: boolean): void {
    const c = this.c;
    const client = c.client;
    if (yes) {
      const who = client.setVerified(target, true);
      return c.say(
        term`* ${c.label(who.userId)} is marked verified; a change of their key will be a hard stop`,
      );
    }
    const t = client.core.trustInfo(target);
    const what = t.trust === "derived"
      ? "their user id is derived from this key (verified by construction)"
      : t.trust === "verified"
      ? "you marked them verified"
      : t.trust === "changed"
      ? "their key CHANGED and is not accepted"
      : "trusted on first use (not verified)";
    c.say(term`* safety code with ${t.label}:`);
    c.say(term`    ${t.safetyCode}`);
    c.say(term`  your key:        ${client.core.fingerprint}`);
    c.say(term`  ${t.label}'s key: ${t.fingerprint}  (${what})`);
    if (t.pending) {
      c.say(term`  NEW key offered: ${t.pending.fingerprint}; safety code with it:`);
      c.say(term`    ${t.pending.safetyCode}`);
    }
    c.say(
      term`  compare the code with ${t.label} in person or on a call (they see the same with /verify); if it matches: /verify ${t.label} yes`,
    );
  }
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
