/**
 * Effect builder used by every handler: frames, errors, closes, logs and store writes go into one ordered list.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import type { ErrorCode, MessageType, PayloadOf } from "../protocol/messages.ts";
import type { Effect, LogLevel, PersistOp, Seal, SigCheck, State } from "./types.ts";

/** What an ERROR refers to, in fields a client matches before the prose (docs/PROTOCOL.md). */
export interface ErrorRefs {
  /** The transfer refused or dropped. */
  file_id?: string;
  /** The `msg_ref` (PROFILE §10) of the frame refused. */
  msg_ref?: string;
}

/** Collects effects for one reducer step. */
export class Out {
  readonly effects: Effect[] = [];
  /** Hex SHA-256 of the canonical payload of the frame being handled ("" outside frame events). */
  digest = "";
  /** The name a frame on a server link was signed under, when it was not the link's server id (PROFILE §15). */
  alias: string | undefined;
  /** The outcome of the shell's signature check on the frame being handled ("absent" outside frame events). */
  sig: SigCheck = "absent";

  constructor(readonly state: State, readonly now: number) {}

  /** A new server-originated frame (the shell signs it). */
  frame<T extends MessageType>(type: T, to: string, payload: PayloadOf<T>, ts = this.now): Envelope<T> {
    return { type, from: this.state.config.serverId, to, ts, payload };
  }

  /** Send a frame; `sign` asks the shell to sign it with the server key. */
  send(conn: number, frame: Envelope, sign = true, seal?: Seal): void {
    const c = this.state.conns.get(conn);
    if (c) c.lastSent = this.now;
    this.effects.push(seal ? { kind: "send", conn, frame, sign, seal } : { kind: "send", conn, frame, sign });
  }

  /**
   * Send an ERROR frame and count a strike when asked; closes the connection at the strike limit. `refs` names the
   * file or message it refuses (`file_id`, `msg_ref`: structured fields beside the prose, docs/PROTOCOL.md).
   */
  error(conn: number, to: string, code: ErrorCode, detail: string, strike = false, refs?: ErrorRefs): void {
    this.send(conn, this.frame("ERROR", to, { code, detail, ...refs }));
    this.log("info", "frame.refused", { conn, code, detail });
    if (strike) this.strike(conn, detail);
  }

  /** Count a strike against a connection (PROFILE §11). */
  strike(conn: number, why: string): void {
    const c = this.state.conns.get(conn);
    if (!c) return;
    c.strikes++;
    if (c.strikes >= this.state.config.limits.maxStrikes) {
      this.close(conn, 1008, `too many invalid frames (${c.strikes}); last: ${why}`.slice(0, 120));
    }
  }

  /** Close a connection. */
  close(conn: number, code: number, reason: string): void {
    this.effects.push({ kind: "close", conn, code, reason });
  }

  /** Persist a change. */
  persist(op: PersistOp): void {
    this.effects.push({ kind: "persist", op });
  }

  /** Emit a log line. */
  log(level: LogLevel, event: string, fields: Record<string, string | number | boolean> = {}): void {
    this.effects.push({ kind: "log", level, event, fields });
  }
}
