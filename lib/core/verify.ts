/**
 * Which key a frame's `sig` must verify with (PROFILE §3), as a pure query on the state. The shell asks it
 * before verifying; the reducer asks it again when the frame is applied, so a frame that raced a state change
 * (a hello, a link, a pin) is judged against the key in force when it is processed.
 *
 * @module
 */
import type { AnyEnvelope } from "../protocol/envelope.ts";
import { presentsKey, ruleOf, userOriginated } from "./rules.ts";
import type { Conn, State } from "./types.ts";

/** The key `env.sig` must verify with on `conn`, or undefined when none is known. */
export function expectedKey(state: State, conn: Conn | undefined, env: AnyEnvelope): string | undefined {
  if (!conn) return undefined;
  switch (conn.role) {
    case "user":
      return conn.userId ? state.users.get(conn.userId)?.pubkey : undefined;
    case "pending":
      if (conn.dial) {
        // The answer to our hello (a welcome, an ERROR): with the key we dialed for.
        if (ruleOf(env)?.dialKey) return conn.dial.expectKey;
        // A link we dialed: the peer's frames are judged as on an established link (it is up at the first one).
        return conn.dial.purpose === "link" ? linkFrameKey(state, conn.dial.serverId, env) : undefined;
      }
      // PROFILE §15 dial-back: a SERVER_PRESENCE_SYNC opening a connection presents no key; it must verify with
      // the key pinned for its `from` (the handler then requires the server a welcome pinned).
      if (ruleOf(env)?.pinnedFirst) return state.servers.get(env.from)?.pubkey;
      // A first frame proves possession of the key it presents; the handler then compares that key with the
      // pin (a known id with another key gets BAD_KEY and the connection is closed).
      return presentsKey(env) ? env.payload.pubkey : undefined;
    case "server":
      return linkFrameKey(state, conn.serverId, env);
  }
}

/**
 * True when a frame on the link to `linkId` is signed under another name (`from:"key1"`, `"server"`): not a
 * user's frame, not from a server we know, not a newcomer's announce. PROFILE §15: such a frame is verified with
 * the link's pinned key and treated as from the link's server.
 */
export function signedUnderAlias(state: State, linkId: string | undefined, env: AnyEnvelope): boolean {
  if (linkId === undefined || env.from === linkId || state.servers.has(env.from)) return false;
  if (userOriginated(env)) return false;
  return presented(env) === undefined; // a newcomer presenting its key is itself, not an alias
}

/** The key a frame on a link presents for a server we may not have pinned yet (its row's `presented`). */
function presented(env: AnyEnvelope): string | undefined {
  return (ruleOf(env)?.presented as ((e: AnyEnvelope) => string | undefined) | undefined)?.(env);
}

function linkFrameKey(state: State, linkId: string | undefined, env: AnyEnvelope): string | undefined {
  const linkKey = linkId ? state.servers.get(linkId)?.pubkey : undefined;
  if (userOriginated(env)) return linkKey;
  if (signedUnderAlias(state, linkId, env)) return linkKey;
  return state.servers.get(env.from)?.pubkey ?? presented(env);
}
