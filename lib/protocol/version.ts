/**
 * The program's version (kept in step with deno.json) and the software string it announces (SERVER_WELCOME,
 * USER_HELLO `client`, `/.well-known/socp`). Here, at the bottom of the layers, so that every layer may read it.
 *
 * @module
 */

/** The program's version (kept in step with deno.json). */
export const VERSION = "0.1.0";
/** The software string reported in /.well-known/socp. */
export const SOFTWARE = `socp-deno/${VERSION}`;
