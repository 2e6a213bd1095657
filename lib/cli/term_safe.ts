/**
 * The terminal client's one output filter: everything that came from the network (message text, display names,
 * labels, file names, ids, a server's error text) is printed through {@linkcode term}, which makes characters that
 * could drive or fool the terminal visible instead of passing them on:
 *
 * - C0 controls (ESC, CR, BEL, backspace, tab…) except the newline of a message's text, DEL, and C1 controls
 *   (U+0080–009F, which some terminals take as CSI and OSC);
 * - bidirectional overrides, embeddings and isolates (U+202A–202E, U+2066–2069), marks (U+200E, U+200F,
 *   U+061C);
 * - zero-width and invisible characters (U+200B–200D, U+2060–2064, U+FEFF, U+00AD, U+180E, U+FFF9–FFFB);
 * - the line and paragraph separators U+2028 and U+2029, and lone surrogates.
 *
 * Each becomes `\u{hex}` (ESC is `\u{1b}`). A newline in a message's text starts a continuation line indented
 * with {@linkcode CONTINUATION}, so a message cannot print a line that passes for the client's own output or
 * for another message; in any other field a newline is made visible too.
 *
 * @example
 * ```ts
 * import { multiline, term } from "./term_safe.ts";
 *
 * const name = "eve\x1b]0;pwned\x07";
 * term`[dm] ${name}: ${multiline("hi\n[12:00:00] [dm] bob: fake")}`;
 * // "[dm] eve\u{1b}]0;pwned\u{7}: hi\n    | [12:00:00] [dm] bob: fake"
 * ```
 * @module
 */

/** The start of a message's continuation line. */
export const CONTINUATION = "    | ";

const UNSAFE =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** One field on one line: every unsafe character (the newline included) made visible. */
export function visible(s: string): string {
  return s.replace(/\n/g, "\\u{a}").replace(UNSAFE, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}

/** A message's text: unsafe characters made visible, each line after the first indented as a continuation. */
export function visibleText(s: string): string {
  return s.split("\n").map((line) => visible(line)).join("\n" + CONTINUATION);
}

/** A value {@linkcode term} prints as a message's text (newlines kept, as continuation lines). */
export class Multiline {
  constructor(readonly text: string) {}
}

/** Mark `text` as a message's text for {@linkcode term}. */
export function multiline(text: string): Multiline {
  return new Multiline(text);
}

/**
 * A line of terminal output: the literal parts are the client's own; every interpolated value passes through
 * {@linkcode visible} (or {@linkcode visibleText} when wrapped by {@linkcode multiline}).
 */
export function term(strings: TemplateStringsArray, ...values: unknown[]): string {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out += (v instanceof Multiline ? visibleText(v.text) : visible(String(v))) + strings[i + 1];
  }
  return out;
}
