/** The small YAML reader that keeps running the node free of registry packages, checked against npm `yaml`. */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.10.2";
import { parse as yamlParse } from "npm:yaml@2.9.1";
import { parseYamlLite } from "../../lib/cli/yaml_lite.ts";

function lite(text: string): unknown {
  const r = parseYamlLite(text);
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

const KEY = "MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAz";

Deno.test("parseYamlLite() reads the standard's bootstrap shape as npm yaml does", () => {
  const docs = [
    `bootstrap_servers:\n  - host: "192.0.2.1"   # introducer 1\n    port: 12345\n    pubkey: "${KEY}"\n  - host: b.example\n    port: 5432\n    pubkey: ${KEY}\n`,
    `# servers\n---\nbootstrap_servers:\n- host: 'it''s'\n  port: 1\n  pubkey: |\n    -----BEGIN PUBLIC KEY-----\n    ${KEY}\n    -----END PUBLIC KEY-----\n`,
    `bootstrap_servers: [{host: a, port: 1, pubkey: "k"}, {host: "b", port: 2, pubkey: k2}]\n`,
    `bootstrap_servers: []\nother: ~\nflag: true\nlist:\n  -\n    - 1\n    - "two"\n`,
    `a:\n  b:\n    c: "x\\ty\\u00e9"\n  d: -3\n`,
    `pubkey: |-\n  line 1\n  line 2\nafter: 1\n`,
  ];
  for (const d of docs) assert.deepEqual(lite(d), yamlParse(d), d);
});

Deno.test("parseYamlLite() refuses what it does not support, with the line number", () => {
  for (
    const [doc, re] of [
      ["a: &x 1\nb: *x\n", /line 1: anchors/],
      ["a: !!str 1\n", /line 1: anchors, aliases and tags/],
      ["a:\n\t- 1\n", /line 2: tabs/],
      ["a: 1\n---\nb: 2\n", /line 2: only one YAML document/],
      ["a: [1,\n  2]\n", /line 1: .*flow collections must fit on one line/],
      ["a: 1\n  b: 2\n", /line 2: unexpected indentation/],
      ["a: 1\na: 2\n", /line 2: duplicate key/],
      ['a: "open\n', /line 1: unterminated/],
    ] as const
  ) {
    const r = parseYamlLite(doc);
    assert.equal(r.ok, false, doc);
    if (!r.ok) assert.match(r.error, re, doc);
  }
});

Deno.test("parseYamlLite() agrees with npm yaml on generated bootstrap files (property)", () => {
  const plain = fc.stringMatching(/^[a-z][a-z0-9.-]{0,20}$/).filter((s) =>
    !/^(true|false|null|yes|no|on|off)$/i.test(s)
  );
  const text = fc.string({ maxLength: 30 }).filter((s) =>
    ![...s].some((ch) => {
      const c = ch.charCodeAt(0);
      return c < 0x20 || (c >= 0x7f && c <= 0x9f) || (c >= 0xd800 && c <= 0xdfff);
    })
  );
  const styled = fc.oneof(
    plain.map((s) => [s, s] as const),
    text.map((s) => [s, JSON.stringify(s)] as const),
    text.map((s) => [s, `'${s.replaceAll("'", "''")}'`] as const),
  );
  const entry = fc.record({ host: styled, port: fc.integer({ min: 1, max: 65535 }), pubkey: styled });
  const comment = fc.constantFrom("", "  # note", " #", "");
  fc.assert(
    fc.property(fc.array(entry, { maxLength: 5 }), comment, fc.boolean(), (entries, c, flow) => {
      const doc = flow
        ? `bootstrap_servers: [${
          entries.map((e) => `{host: ${e.host[1]}, port: ${e.port}, pubkey: ${e.pubkey[1]}}`).join(", ")
        }]${c}\n`
        : `bootstrap_servers:${c}\n` +
          (entries.length === 0
            ? ""
            : entries.map((e) =>
              `  - host: ${e.host[1]}${c}\n    port: ${e.port}\n    pubkey: ${e.pubkey[1]}\n`
            ).join(""));
      const want = yamlParse(doc);
      assert.deepEqual(lite(doc), want, doc);
      if (entries.length) {
        assert.deepEqual((want as { bootstrap_servers: unknown[] }).bootstrap_servers.length, entries.length);
      }
    }),
    { numRuns: 500, seed: 7 },
  );
});
