import assert from "node:assert/strict";
import { join } from "node:path";
import { sanitizeFileName, saveDownload } from "../../lib/client/downloads.ts";

Deno.test("sanitizeFileName() keeps only a safe base name", () => {
  const cases: [string, string][] = [
    ["../../etc/passwd", "passwd"],
    ["..\\..\\windows\\system32\\cmd.exe", "cmd.exe"],
    ["pa\u0007ss\u0000wd\n", "passwd"],
    [".bashrc", "bashrc"],
    ["...", "download"],
    ["", "download"],
    ["/", "download"],
    ["report final.pdf", "report final.pdf"],
    ["evil\u202egpj.exe", "evilgpj.exe"], // right-to-left override
    ["a<b>c:d|e?.txt", "a_b_c_d_e_.txt"],
    ["ünïcødé.txt", "ünïcødé.txt"],
  ];
  for (const [input, want] of cases) assert.equal(sanitizeFileName(input), want, JSON.stringify(input));
  assert.ok(new TextEncoder().encode(sanitizeFileName("é".repeat(300))).length <= 200);
});

Deno.test("saveDownload() never overwrites and never writes outside its folder", async () => {
  const root = Deno.makeTempDirSync();
  const dir = join(root, "downloads");
  const a = await saveDownload(dir, "../../escape.txt", new TextEncoder().encode("one"));
  const b = await saveDownload(dir, "escape.txt", new TextEncoder().encode("two"));
  const c = await saveDownload(dir, "escape.txt", new TextEncoder().encode("three"));
  assert.deepEqual([a, b, c], [
    join(dir, "escape.txt"),
    join(dir, "escape (1).txt"),
    join(dir, "escape (2).txt"),
  ]);
  assert.equal(Deno.readTextFileSync(a), "one");
  assert.deepEqual([...Deno.readDirSync(root)].map((e) => e.name), ["downloads"]);
});
