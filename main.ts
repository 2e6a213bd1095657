/**
 * The `socp` executable: `socp serve`, `socp chat`, `socp info`. See `socp help`.
 *
 * @module
 */
import { main } from "./lib/cli/main.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
