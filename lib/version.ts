/** The program's version (kept in step with deno.json). */
export const VERSION = "0.1.0";
/** The software string reported in /.well-known/socp. */
export const SOFTWARE = `socp-deno/${VERSION}`;
