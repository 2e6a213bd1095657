/**
 * A small YAML reader for configuration files such as the standard's bootstrap list: block mappings and
 * sequences by indentation, one-line flow collections (`[a, b]`, `{k: v}`), plain, single- and double-quoted
 * scalars, `|` / `|-` literal blocks, and `#` comments. Anything else (anchors, aliases, tags, several documents,
 * multi-line flow collections) is refused with the line number, never guessed at.
 *
 * It exists so that running the node needs no package from a registry; the tests check it against the `yaml`
 * package on generated documents.
 *
 * @example
 * ```ts
 * parseYamlLite("bootstrap_servers:\n  - host: a\n    port: 1\n");
 * // { ok: true, value: { bootstrap_servers: [{ host: "a", port: 1 }] } }
 * ```
 * @module
 */

/** A parsed value: what JSON can hold. */
export type YamlValue = null | boolean | number | string | YamlValue[] | { [key: string]: YamlValue };

/** The document, or why it cannot be read (with its line number). */
export type YamlResult = { ok: true; value: YamlValue } | { ok: false; error: string };

const MAX_DEPTH = 32;

interface Line {
  no: number;
  indent: number;
  text: string;
}

class YamlError {
  constructor(readonly message: string) {}
}

/** Cut a trailing ` # comment` that is not inside quotes. */
function stripComment(s: string): string {
  let quote = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (quote) {
      if (c === quote) {
        if (quote === "'" && s[i + 1] === "'") i++;
        else quote = "";
      } else if (quote === '"' && c === "\\") i++;
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s[{,:]/.test(s[i - 1])) quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(s[i - 1]))) return s.slice(0, i).trimEnd();
  }
  return s.trimEnd();
}

class Reader {
  private i = 0;
  constructor(private readonly lines: Line[], private readonly raw: string[]) {}

  private fail(no: number, what: string): never {
    throw new YamlError(`line ${no}: ${what}`);
  }

  peek(): Line | undefined {
    return this.lines[this.i];
  }

  /** A node whose lines are indented by exactly `indent`. */
  node(indent: number, depth: number): YamlValue {
    if (depth > MAX_DEPTH) this.fail(this.peek()?.no ?? 0, `nesting deeper than ${MAX_DEPTH} levels`);
    const first = this.peek();
    if (!first || first.indent < indent) return null;
    if (first.text === "-" || first.text.startsWith("- ")) return this.sequence(first.indent, depth);
    return this.mapping(first.indent, depth);
  }

  private sequence(indent: number, depth: number): YamlValue[] {
    const out: YamlValue[] = [];
    for (
      let l = this.peek();
      l && l.indent === indent && (l.text === "-" || l.text.startsWith("- "));
      l = this.peek()
    ) {
      const rest = l.text.slice(1).replace(/^ +/, "");
      if (rest === "") {
        this.i++;
        out.push(this.child(indent, depth));
        continue;
      }
      // "- key: value" opens a mapping whose keys sit at the column of `key`.
      const col = indent + (l.text.length - rest.length);
      if (keyOf(rest) !== null) {
        this.lines[this.i] = { no: l.no, indent: col, text: rest };
        out.push(this.mapping(col, depth + 1));
      } else {
        this.i++;
        out.push(this.inline(rest, l.no, depth));
      }
    }
    this.expectEnd(indent);
    return out;
  }

  private mapping(indent: number, depth: number): { [key: string]: YamlValue } {
    const out: { [key: string]: YamlValue } = {};
    for (let l = this.peek(); l && l.indent === indent; l = this.peek()) {
      const kv = keyOf(l.text);
      if (kv === null) this.fail(l.no, `expected "key: value" or "- item", got "${l.text.slice(0, 40)}"`);
      const [key, rest] = kv;
      if (Object.hasOwn(out, key)) this.fail(l.no, `duplicate key "${key}"`);
      this.i++;
      if (rest === "") {
        // The value is on the next lines: more indented, or a sequence at the same indentation.
        const next = this.peek();
        if (next && next.indent === indent && (next.text === "-" || next.text.startsWith("- "))) {
          out[key] = this.sequence(indent, depth + 1);
        } else out[key] = this.child(indent, depth);
      } else if (rest === "|" || rest === "|-") out[key] = this.block(indent, l.no, rest === "|-");
      else out[key] = this.inline(rest, l.no, depth);
    }
    this.expectEnd(indent);
    return out;
  }

  private child(parentIndent: number, depth: number): YamlValue {
    const next = this.peek();
    return next && next.indent > parentIndent ? this.node(next.indent, depth + 1) : null;
  }

  /** A literal block scalar: the raw lines indented deeper than the key. */
  private block(indent: number, no: number, strip: boolean): string {
    const parts: string[] = [];
    let blockIndent = -1;
    while (this.i < this.lines.length && this.lines[this.i].indent > indent) {
      const l = this.lines[this.i];
      if (blockIndent < 0) blockIndent = l.indent;
      if (l.indent < blockIndent) {
        this.fail(l.no, "a literal block's lines must keep its first line's indentation");
      }
      parts.push(this.raw[l.no - 1].slice(blockIndent).trimEnd());
      this.i++;
    }
    if (parts.length === 0) this.fail(no, "an empty literal block");
    return parts.join("\n") + (strip ? "" : "\n");
  }

  private expectEnd(indent: number): void {
    const l = this.peek();
    if (l && l.indent > indent) this.fail(l.no, "unexpected indentation");
  }

  private inline(text: string, no: number, depth: number): YamlValue {
    if (/^[&*!]/.test(text)) this.fail(no, "anchors, aliases and tags are not supported");
    if (text.startsWith("[") || text.startsWith("{")) {
      const f = new Flow(text, no, depth);
      const v = f.value();
      f.end();
      return v;
    }
    return scalar(text, no);
  }
}

/** `[key, rest]` when the line is `key: rest` (or `key:`), else null. */
function keyOf(text: string): [string, string] | null {
  let key: string;
  let rest: string;
  if (text.startsWith('"') || text.startsWith("'")) {
    const end = quotedEnd(text);
    if (end < 0 || text[end + 1] !== ":" || (text.length > end + 2 && text[end + 2] !== " ")) return null;
    key = scalar(text.slice(0, end + 1), 0) as string;
    rest = text.slice(end + 2).trim();
  } else {
    const m = /^([^\s:#\-?[\]{},][^:]*?|-[^\s:][^:]*?):(?: +(.*))?$/.exec(text);
    if (!m) return null;
    key = m[1].trim();
    rest = (m[2] ?? "").trim();
  }
  return [key, rest];
}

/** Index of the closing quote of a quoted scalar starting at 0, or -1. */
function quotedEnd(s: string): number {
  const q = s[0];
  for (let i = 1; i < s.length; i++) {
    if (q === '"' && s[i] === "\\") i++;
    else if (s[i] === q) {
      if (q === "'" && s[i + 1] === "'") i++;
      else return i;
    }
  }
  return -1;
}

const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  n: "\n",
  t: "\t",
  r: "\r",
  b: "\b",
  f: "\f",
  "0": "\0",
  " ": " ",
};

/** A scalar on one line: quoted text, or a plain scalar resolved to null, a boolean, an integer or a string. */
function scalar(text: string, no: number): YamlValue {
  if (text.startsWith('"')) {
    const end = quotedEnd(text);
    if (end !== text.length - 1) {
      throw new YamlError(`line ${no}: unterminated or trailing text after a string`);
    }
    return text.slice(1, -1).replace(/\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/g, (_, e: string) => {
      if (e[0] === "u" || e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
      const r = ESCAPES[e];
      if (r === undefined) throw new YamlError(`line ${no}: unknown escape \\${e}`);
      return r;
    });
  }
  if (text.startsWith("'")) {
    const end = quotedEnd(text);
    if (end !== text.length - 1) {
      throw new YamlError(`line ${no}: unterminated or trailing text after a string`);
    }
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (/^[&*!|>%@`]/.test(text)) throw new YamlError(`line ${no}: unsupported YAML: "${text.slice(0, 20)}"`);
  if (/^(null|Null|NULL|~)$/.test(text)) return null;
  if (/^(true|True|TRUE)$/.test(text)) return true;
  if (/^(false|False|FALSE)$/.test(text)) return false;
  if (/^[-+]?[0-9]+$/.test(text)) {
    const n = Number(text);
    if (Number.isSafeInteger(n)) return n;
  }
  return text;
}

/** One-line flow collections: `[a, "b", {k: v}]`. */
class Flow {
  private i = 0;
  constructor(private readonly s: string, private readonly no: number, private readonly depth: number) {}

  private fail(what: string): never {
    throw new YamlError(`line ${this.no}: ${what} (flow collections must fit on one line)`);
  }
  private ws(): void {
    while (this.s[this.i] === " ") this.i++;
  }
  end(): void {
    this.ws();
    if (this.i !== this.s.length) this.fail("trailing text after a flow collection");
  }
  value(level = 0): YamlValue {
    if (this.depth + level > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH} levels`);
    this.ws();
    const c = this.s[this.i];
    if (c === "[" || c === "{") {
      this.i++;
      const close = c === "[" ? "]" : "}";
      const list: YamlValue[] = [];
      const map: { [key: string]: YamlValue } = {};
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        return c === "[" ? list : map;
      }
      for (;;) {
        if (c === "[") list.push(this.value(level + 1));
        else {
          const k = this.value(level + 1);
          this.ws();
          if (this.s[this.i] !== ":") this.fail('expected ":" in a flow mapping');
          this.i++;
          map[String(k)] = this.value(level + 1);
        }
        this.ws();
        const d = this.s[this.i++];
        if (d === close) return c === "[" ? list : map;
        if (d !== ",") this.fail(`expected "," or "${close}"`);
      }
    }
    if (c === '"' || c === "'") {
      const end = quotedEnd(this.s.slice(this.i));
      if (end < 0) this.fail("unterminated string");
      const v = scalar(this.s.slice(this.i, this.i + end + 1), this.no);
      this.i += end + 1;
      return v;
    }
    const m = /^[^,[\]{}:]+?(?=\s*(?:[,\]}]|:(?:\s|$)|$))/.exec(this.s.slice(this.i));
    if (!m) this.fail("expected a value");
    this.i += m[0].length;
    return scalar(m[0].trim(), this.no);
  }
}

/** Read a YAML document of the subset described in the module docs; a total function. */
export function parseYamlLite(text: string): YamlResult {
  const raw = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const lines: Line[] = [];
  for (let n = 0; n < raw.length; n++) {
    if (/\t/.test(raw[n].match(/^\s*/)![0])) {
      return { ok: false, error: `line ${n + 1}: tabs cannot indent YAML` };
    }
    const body = stripComment(raw[n]);
    const text = body.trim();
    if (text === "" || (text === "---" && lines.length === 0)) continue;
    if (text === "---" || text === "...") {
      return { ok: false, error: `line ${n + 1}: only one YAML document is supported` };
    }
    lines.push({ no: n + 1, indent: body.length - body.trimStart().length, text });
  }
  if (lines.length === 0) return { ok: true, value: null };
  try {
    const first = lines[0];
    const collection = first.text === "-" || first.text.startsWith("- ") || keyOf(first.text) !== null;
    if (!collection) {
      if (lines.length > 1) {
        return { ok: false, error: `line ${lines[1].no}: more than one value at the top level` };
      }
      if (first.text.startsWith("[") || first.text.startsWith("{")) {
        const f = new Flow(first.text, first.no, 0);
        const value = f.value();
        f.end();
        return { ok: true, value };
      }
      return { ok: true, value: scalar(first.text, first.no) };
    }
    const r = new Reader(lines, raw);
    const value = r.node(first.indent, 0);
    const left = r.peek();
    if (left) return { ok: false, error: `line ${left.no}: unexpected indentation` };
    return { ok: true, value };
  } catch (e) {
    if (e instanceof YamlError) return { ok: false, error: e.message };
    throw e;
  }
}
