/** The terminal's output filter, character by character (the end-to-end test runs it through `socp chat`). */
import assert from "node:assert/strict";
import { CONTINUATION, multiline, term, visible, visibleText } from "../../lib/cli/term_safe.ts";

Deno.test("every C0 (but the newline of a text), DEL, C1, bidi, zero-width and separator character is made visible", () => {
  const unsafe = [
    ...Array.from({ length: 0x20 }, (_, i) => i).filter((i) => i !== 0x0a),
    0x7f,
    ...Array.from({ length: 0x20 }, (_, i) => 0x80 + i),
    0x202a,
    0x202b,
    0x202c,
    0x202d,
    0x202e,
    0x2066,
    0x2067,
    0x2068,
    0x2069,
    0x200e,
    0x200f,
    0x061c,
    0x200b,
    0x200c,
    0x200d,
    0x2060,
    0xfeff,
    0x2028,
    0x2029,
    0x00ad,
  ];
  for (const cp of unsafe) {
    const c = String.fromCharCode(cp);
    assert.equal(visible(`a${c}b`), `a\\u{${cp.toString(16)}}b`, `U+${cp.toString(16)}`);
    assert.equal(visibleText(`a${c}b`), `a\\u{${cp.toString(16)}}b`);
  }
  assert.equal(visible("line\nnext"), "line\\u{a}next", "a name never spans two lines");
  assert.equal(visible("\ud800x"), "\\u{d800}x", "a lone surrogate");
  for (const ok of ["héllo wörld", "日本語", "emoji 😀", "ÿ", "Ω", "a\\u{1b}b"]) {
    assert.equal(visible(ok), ok);
  }
});

Deno.test("a message's extra lines are continuation lines; term() filters every value and only the values", () => {
  assert.equal(visibleText("one\ntwo\n* fake"), `one\n${CONTINUATION}two\n${CONTINUATION}* fake`);
  const name = "eve\x1b[2J";
  const line = term`[dm] ${name}: ${multiline("hi\r\n[12:00:00] [dm] bob: x")}`;
  assert.equal(line, `[dm] eve\\u{1b}[2J: hi\\u{d}\n${CONTINUATION}[12:00:00] [dm] bob: x`);
  assert.equal(term`n=${42} ${"a\nb"}`, "n=42 a\\u{a}b");
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(line));
});
