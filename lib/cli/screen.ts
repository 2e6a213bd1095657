/**
 * The terminal chat's output: the {@linkcode Screen} (lines out, with a prompt kept below them on a terminal),
 * the {@linkcode Safe} text it accepts (every value from the network passes through the output filter of
 * term_safe.ts), and how times, senders and kept messages are shown.
 *
 * @module
 */
import type { HistoryMessage } from "./history.ts";
import { multiline, term as termText } from "./term_safe.ts";

/** Text that may be printed: built by {@linkcode term} or one of the client's own constants. */
export type Safe = string & { readonly safe: unique symbol };

/** A line of output whose interpolated values (anything from the network) pass through the output filter. */
export function term(strings: TemplateStringsArray, ...values: unknown[]): Safe {
  return termText(strings, ...values) as Safe;
}

/** The client's own constant text (never anything from the network). */
export function own(text: string): Safe {
  return text as Safe;
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

/** A size in MiB ("16 MiB", "1.5 MiB"). */
export function mib(n: number): string {
  return `${(n / 1048576).toFixed(n % 1048576 ? 1 : 0)} MiB`;
}

/** How a received message's sender is shown: the name only when the signature is by their pinned key. */
export function sender(
  e: { fromLabel: string; verified: boolean; unencrypted?: boolean; warning?: string },
): Safe {
  return e.verified
    ? term`${e.fromLabel}${e.unencrypted ? "  (UNENCRYPTED)" : ""}${
      e.warning ? `  (note: ${e.warning})` : ""
    }`
    : term`[UNVERIFIED — claims to be ${e.fromLabel}${e.unencrypted ? ", UNENCRYPTED" : ""}${
      e.warning ? `: ${e.warning}` : ""
    }]`;
}

/** One kept message as a line (or lines: a message's extra lines are indented, as when it arrived). */
export function historyLine(m: HistoryMessage): Safe {
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
}

/**
 * The terminal: lines out, with a prompt kept below them when stdin and stdout are terminals. It prints only
 * {@linkcode Safe} text: lines made by {@linkcode term} (every value from the network filtered) or the client's
 * own constants ({@linkcode own}).
 */
export class Screen {
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
