/**
 * The counters the shell keeps while it runs (frames, bytes, refusals, verifications, connections, shedding,
 * too-slow cuts). The executor, the connections and the inbound pipeline count; `/metrics` (http.ts) and the
 * node's hooks (create_node.ts) read them. Plain fields: no clock, no I/O.
 *
 * @example
 * ```ts
 * import { Counters } from "./counters.ts";
 * const c = new Counters();
 * c.framesIn++;
 * ```
 * @module
 */

/** Counters the shell keeps for `/metrics`. */
export class Counters {
  /** Frames received (past the size check). */
  framesIn = 0;
  /** Frames handed to a socket. */
  framesOut = 0;
  /** Bytes (UTF-16 code units, about bytes for JSON) of the frames received and of those handed to a socket. */
  frameBytes = 0;
  /** ERROR frames sent. */
  refused = 0;
  /** Signature verifications started. */
  verifications = 0;
  /** Connections opened (accepted or dialed) since start. */
  connectionsTotal = 0;
  /** Frames refused unread because too many were in flight. */
  shed = 0;
  /** Connections cut because their peer did not read. */
  tooSlow = 0;
}
