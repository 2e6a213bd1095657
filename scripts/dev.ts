/**
 * `deno task dev`: a node that follows its sources. It builds the web app (scripts/build_web.ts), runs
 * `socp serve` under `deno run --watch` (which restarts the node when any module it loads changes, the generated
 * lib/web/assets.gen.ts included), and watches the sources of the web bundle (lib/web/app, and lib/client,
 * lib/protocol and lib/crypto, which the bundle includes): on a change it builds the bundle again, and the new
 * bundle restarts the node. Reload the page to get the new app. Arguments go to `socp serve`.
 *
 * Usage: deno run --allow-read --allow-write --allow-run --allow-env scripts/dev.ts [serve options]
 *
 * @module
 */
const root = new URL("../", import.meta.url).pathname;
const WATCHED = ["lib/web/app", "lib/client", "lib/protocol", "lib/crypto"].map((d) => root + d);

async function build(): Promise<boolean> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-run", "--allow-env", "scripts/build_web.ts"],
    cwd: root,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return out.success;
}

if (!await build()) console.error("dev: the web app did not build; the node serves the last bundle");

const node = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--watch",
    "--no-clear-screen",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "main.ts",
    "serve",
    ...Deno.args,
  ],
  cwd: root,
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

const watcher = Deno.watchFs(WATCHED, { recursive: true });
let timer: ReturnType<typeof setTimeout> | undefined;
let building = false;
let again = false;

/** Build once the changes settle; a change during a build builds again after it. */
async function rebuild(): Promise<void> {
  if (building) {
    again = true;
    return;
  }
  building = true;
  do {
    again = false;
    console.error("dev: web app sources changed: rebuilding the bundle");
    if (!await build()) console.error("dev: the web app did not build; fix it and save again");
  } while (again);
  building = false;
}

(async () => {
  for await (const e of watcher) {
    if (e.kind === "access" || e.paths.every((p) => p.endsWith("~") || p.includes("/."))) continue;
    clearTimeout(timer);
    timer = setTimeout(rebuild, 200);
  }
})();

// `deno run --watch` hands SIGTERM to the node (which closes cleanly) and then waits for a file change instead
// of exiting, so it is ended for good once the node had a moment to close.
const stop = () => {
  const signal = (s: Deno.Signal) => {
    try {
      node.kill(s);
    } catch { /* already gone */ }
  };
  signal("SIGTERM");
  setTimeout(() => signal("SIGKILL"), 2000);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
const status = await node.status;
watcher.close();
clearTimeout(timer);
Deno.exit(status.code);
