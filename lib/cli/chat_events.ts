/**
 * The terminal chat shows what the client core reports: messages (kept in the history too), presence, key
 * changes (PROFILE §16), our messages' states, files (saved to the downloads folder), and the connection.
 *
 * @module
 */
import type { ClientEvent } from "../client/client.ts";
import { saveDownload } from "../client/downloads.ts";
import type { ChatState } from "./chat_state.ts";
import { own, sender, stamp, term } from "./screen.ts";
import { multiline } from "./term_safe.ts";

/** Where the events of one chat are shown. */
export class ChatEvents {
  private serverPinSaid = false;

  /** Events of chat `c`; received files go to `downloads`; `pinnedBefore`: the server's key was pinned already. */
  constructor(
    private readonly c: ChatState,
    private readonly downloads: string,
    private readonly pinnedBefore: boolean,
  ) {}

  /** Show one event. */
  show(e: ClientEvent): void {
    const c = this.c;
    const say = (line: ReturnType<typeof term>) => c.say(line);
    switch (e.kind) {
      case "dm":
      case "public": {
        const conv = e.kind === "dm" ? e.from : "public";
        const { ts, from, fromLabel, text, verified, unencrypted } = e;
        c.keep({
          conv,
          convLabel: e.kind === "dm" ? fromLabel : "all",
          ts,
          from,
          fromLabel,
          text,
          verified,
          unencrypted,
        });
        return say(
          term`[${stamp(ts)}] [${own(e.kind === "dm" ? "dm" : "all")}] ${own(sender(e))}: ${multiline(text)}`,
        );
      }
      case "joined":
        if (e.peer.userId !== c.me.userId) say(term`* ${c.label(e.peer.userId)} is online`);
        return;
      case "left":
        return say(term`* ${c.label(e.peer.userId)} left`);
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
        if (!this.pinnedBefore && !this.serverPinSaid) {
          this.serverPinSaid = true;
          say(term`* pinned the server's key at first contact: ${e.pin.fingerprint}`);
        }
        return;
      case "serverKeyChanged":
        return say(
          term`! WARNING: the server at ${c.server} presents ${
            e.newFingerprint ? `another key (${e.newFingerprint})` : "no key"
          } than the one pinned at first contact (${e.oldFingerprint}). It may not be your server. Public channel keys from it are refused. If its operator really changed the key: /trust-server`,
        );
      case "channelKeyChanged":
        return say(
          term`! the public channel key changed (creator key ${e.oldFingerprint} -> ${e.newFingerprint}), handed out by your server; earlier members may not read new public messages`,
        );
      case "message":
        return this.ours(e.message);
      case "ack":
        if (e.what?.startsWith("file ")) say(term`* ${e.what}: relayed whole`);
        return;
      case "fileStart":
        return say(
          term`* ${c.label(e.from)} is sending ${
            own(e.mode === "public" ? "everyone " : "")
          }"${e.name}" (${e.size} bytes)`,
        );
      case "fileProgress":
        return say(term`* receiving "${e.name}": ${Math.floor((e.received / Math.max(1, e.size)) * 100)}%`);
      case "file":
        return this.file(e);
      case "fileRefused":
        return say(term`! sending "${e.name}" stopped: ${e.reason}`);
      case "closed":
        if (c.quitting) return;
        c.lost = true;
        return say(
          term`* connection lost (${e.code}${
            e.reason ? ": " + e.reason : ""
          }); messages wait until it is back`,
        );
      case "reconnecting":
        return say(term`* reconnecting in ${Math.round(e.inMs / 100) / 10} s (attempt ${e.attempt})`);
      case "ready":
        if (c.lost) say(term`* reconnected to ${c.server} (server ${e.serverId})`);
        c.lost = false;
        return;
      case "refused":
        return c.fail(
          e.code === "TAKEN_OVER"
            ? term`${e.detail}; not reconnecting`
            : term`the server refused us: ${e.code}: ${e.detail}`,
        );
      default:
        return;
    }
  }

  /** One of our messages changed state: echo it when it went out, say when it was accepted or refused. */
  private ours(m: Extract<ClientEvent, { kind: "message" }>["message"]): void {
    const c = this.c;
    c.keepOurs(m);
    const to = m.kind === "public" ? "all" : m.toLabel;
    const echo = (note: string) =>
      c.say(
        term`[${stamp(m.ts)}] [to ${to}] ${multiline(m.text)}${own(note)}${
          own(c.lostAt.has(m.id) ? "  (sent after reconnecting)" : "")
        }`,
      );
    if (m.state === "sent" && !m.resent) {
      echo(m.recipientOffline ? "  (offline: it will be delivered when they return)" : "");
    } else if (m.state === "accepted") {
      c.say(
        term`* message to ${to}: accepted for delivery${
          own(m.recipientOffline ? " (queued until they return)" : "")
        }`,
      );
    } else if (m.state === "failed") {
      c.say(term`! message to ${to} was not delivered: ${m.error ?? "refused"}`);
    }
  }

  /** A file arrived (or was refused): save it to the downloads folder and keep it in the history. */
  private file(e: Extract<ClientEvent, { kind: "file" }>): void {
    const c = this.c;
    const who = term`"${e.name}" from ${e.fromName}`;
    const keepFile = (saved?: string, problem?: string) =>
      c.keep({
        conv: e.mode === "public" ? "public" : e.from,
        convLabel: e.mode === "public" ? "all" : c.label(e.from),
        ts: Date.now(),
        from: e.from,
        fromLabel: c.label(e.from),
        file: { name: e.name, size: e.bytes?.length ?? 0, sha256: e.sha256, saved, problem },
        verified: e.verified,
      });
    if (!e.bytes) {
      keepFile(undefined, e.problem ?? "refused");
      return c.say(term`! refused ${own(who)}: ${e.problem}`); // the core tells the sender
    }
    saveDownload(this.downloads, e.name, e.bytes).then(
      (path) => {
        keepFile(path);
        c.say(
          term`* saved ${own(who)} to ${path}${own(e.verified ? "" : "  (UNVERIFIED sender signature)")}`,
        );
      },
      (er) => {
        keepFile(undefined, `not saved: ${(er as Error).message}`);
        c.say(term`! could not save ${own(who)}: ${(er as Error).message}`);
      },
    );
  }
}
