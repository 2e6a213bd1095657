/**
 * The terminal chat's identity: the user's key file (opened with up to three passphrase tries on a terminal, or
 * `SOCP_PASSPHRASE`), or a new one, made only once the server is known to be reachable.
 *
 * @module
 */
import { join } from "node:path";
import { createUser, openUser, readKeyFile, type UserIdentity } from "../client/keyfile.ts";
import { KeyFileError, MIN_PASSPHRASE_CHARS, WrongPassphrase } from "../crypto/keyfile.ts";
import { UsageError } from "./config.ts";
import { socpHome } from "./contacts.ts";
import { readPassphrase } from "./lines.ts";

/** Where a user's key file lives by default: $SOCP_HOME/keys/<name>.json (SOCP_HOME defaults to ~/.socp). */
export function defaultKeyPath(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_") || "default";
  return join(socpHome(), "keys", `${safe}.json`);
}

/** Ask for the passphrase of a new key twice (up to 3 tries); `null` when they never matched. */
async function newPassphrase(keyPath: string, err: (s: string) => void): Promise<string | null> {
  for (let i = 0; i < 3; i++) {
    const a = await readPassphrase(
      `new passphrase for ${keyPath} (at least ${MIN_PASSPHRASE_CHARS} characters): `,
    );
    if ([...a].length < MIN_PASSPHRASE_CHARS) {
      err(`the passphrase must have at least ${MIN_PASSPHRASE_CHARS} characters; try again`);
      continue;
    }
    const b = await readPassphrase("the same passphrase again: ");
    if (a === b) return a;
    err("the two passphrases differ; try again");
  }
  return null;
}

/** Can a WebSocket to `url` be opened (within 5 s)? An error message when not. */
async function reachable(url: string): Promise<string | null> {
  let ws: WebSocket;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    return (e as Error).message;
  }
  const r = await new Promise<string | null>((resolve) => {
    const t = setTimeout(() => resolve("no answer within 5 s"), 5000);
    ws.onopen = () => (clearTimeout(t), resolve(null));
    ws.onerror = () => (clearTimeout(t), resolve("connection refused or failed"));
  });
  await new Promise<void>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    const t = setTimeout(resolve, 1000);
    ws.onclose = () => (clearTimeout(t), resolve());
    try {
      ws.close();
    } catch {
      clearTimeout(t);
      resolve();
    }
  });
  return r;
}

/**
 * Open the key file (3 passphrase tries on a terminal), or create it once the server is known reachable. The
 * exit code 1 when the server cannot be reached for a new key.
 */
export async function identity(
  server: string,
  keyPath: string,
  name: string | undefined,
  err: (s: string) => void,
): Promise<UserIdentity | number> {
  const env = Deno.env.get("SOCP_PASSPHRASE");
  const text = await readKeyFile(keyPath);
  if (text === undefined) {
    const problem = await reachable(server);
    if (problem) {
      err(`cannot reach ${server} (${problem}); no key was created. Check --server and that the node runs.`);
      return 1;
    }
    const pass = env ?? await newPassphrase(keyPath, err);
    if (pass === null) throw new UsageError("no passphrase was confirmed; no key was created");
    if ([...pass].length < MIN_PASSPHRASE_CHARS) {
      throw new UsageError(
        `SOCP_PASSPHRASE is too short for a new key (at least ${MIN_PASSPHRASE_CHARS} characters); no key was created`,
      );
    }
    return await createUser(keyPath, pass, { displayName: name });
  }
  for (let i = 1;; i++) {
    const pass = env ?? await readPassphrase(`passphrase for ${keyPath}: `);
    try {
      return await openUser(keyPath, text, pass, { displayName: name });
    } catch (e) {
      if (e instanceof KeyFileError) throw new UsageError(`${keyPath}: ${e.message}`);
      if (!(e instanceof WrongPassphrase)) throw e;
      if (env !== undefined || i >= 3) {
        throw new UsageError(
          `${keyPath}: wrong passphrase${env !== undefined ? " (from SOCP_PASSPHRASE)" : ""}`,
        );
      }
      err("wrong passphrase; try again");
    }
  }
}
