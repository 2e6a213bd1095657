/**
 * The import structure docs/ARCHITECTURE.md states, checked on the source: which layer of lib/ may import which,
 * no cycle between layers, no cycle between files, and no runtime call (`Deno.*`, `Date.now()`,
 * `Math.random()`, `await`) in the pure layers (lib/protocol, lib/core).
 */
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";

const LIB = new URL("../lib/", import.meta.url).pathname;

/** Which layers each layer may import (besides itself), as docs/ARCHITECTURE.md says. */
const MAY_IMPORT: Record<string, string[]> = {
  protocol: [],
  core: ["protocol"],
  crypto: ["protocol"],
  store: ["core", "crypto", "protocol"],
  client: ["protocol", "crypto"],
  net: ["protocol", "core", "crypto", "store", "web/routes"],
  "web/routes": ["protocol", "core"],
  "web/app": ["protocol", "crypto", "client"],
  cli: ["protocol", "core", "crypto", "store", "net", "client", "web/routes", "version"],
  version: ["protocol"],
};

function layerOf(file: string): string {
  const rel = relative(LIB, file);
  if (rel === "version.ts") return "version";
  if (rel === "web/routes.ts" || rel === "web/assets.gen.ts") return "web/routes";
  if (rel.startsWith("web/app/")) return "web/app";
  return rel.split("/")[0];
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of Deno.readDirSync(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) walk(p, out);
    else if (e.name.endsWith(".ts") && e.name !== "assets.gen.ts") out.push(p);
  }
  return out;
}

/** The code of a file without its comments (the examples in JSDoc import what a caller would). */
function code(file: string): string {
  return Deno.readTextFileSync(file).replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

/** Relative imports of a file (static `import`/`export … from`, and `import("…")`), resolved to paths. */
function importsOf(file: string): string[] {
  const text = code(file);
  const found: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) {
    found.push(resolve(dirname(file), m[1]));
  }
  return found;
}

const files = walk(LIB);
const graph = new Map(files.map((f) => [f, importsOf(f).filter((i) => i.startsWith(LIB))]));

Deno.test("each layer of lib/ imports only the layers below it", () => {
  const wrong: string[] = [];
  for (const [file, deps] of graph) {
    const from = layerOf(file);
    for (const dep of deps) {
      const to = layerOf(dep);
      const toFile = relative(LIB, dep).replace(/\.ts$/, "");
      if (to === from || MAY_IMPORT[from]?.includes(to) || MAY_IMPORT[from]?.includes(toFile)) continue;
      wrong.push(`${relative(LIB, file)} (${from}) imports ${relative(LIB, dep)} (${to})`);
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("no import cycle between files of lib/", () => {
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(LIB, p)).join(" -> "));
      return;
    }
    state.set(f, "open");
    for (const d of graph.get(f) ?? []) visit(d, [...path, f]);
    state.set(f, "done");
  };
  for (const f of files) visit(f, []);
  assert.deepEqual(cycles, []);
});

Deno.test("lib/protocol and lib/core make no runtime call: no Deno.*, Date.now(), Math.random() or await", () => {
  const wrong: string[] = [];
  for (const file of files.filter((f) => ["protocol", "core"].includes(layerOf(f)))) {
    const text = code(file); // comments and their examples may show how a caller uses the layer
    for (const bad of [/\bDeno\./, /\bDate\.now\(/, /\bMath\.random\(/, /\bawait\b/, /\basync\b/]) {
      if (bad.test(text)) wrong.push(`${relative(LIB, file)}: ${bad.source}`);
    }
  }
  assert.deepEqual(wrong, []);
});
