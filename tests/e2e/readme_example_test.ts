/**
 * The README's library example, run as the program it is (its `./mod.ts` import pointed at this checkout): it
 * prints the DM and ends by itself, with exit code 0.
 */
import assert from "node:assert/strict";

const README = new URL("../../README.md", import.meta.url);
const MOD = new URL("../../mod.ts", import.meta.url).href;

Deno.test("the README's library example prints its DM and ends", async () => {
  const text = Deno.readTextFileSync(README);
  const at = text.indexOf("## As a library");
  assert.ok(at >= 0);
  const code = /```ts\n([\s\S]*?)```/.exec(text.slice(at))?.[1];
  if (!code?.includes(`from "./mod.ts"`)) throw new Error("the example imports ./mod.ts");
  const dir = Deno.makeTempDirSync({ prefix: "socp-readme-" });
  Deno.writeTextFileSync(`${dir}/example.ts`, code.replace('"./mod.ts"', JSON.stringify(MOD)));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "example.ts"],
    cwd: dir,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // A program that never ends is killed here and fails the test.
    signal: AbortSignal.timeout(120_000),
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(stdout.trim(), "alice: hello");
});
