/**
 * Structured logs: one line per event, `time LEVEL event key=value ...`. Values are quoted when they hold
 * spaces; control characters are escaped so a peer cannot forge log lines. Never pass secrets here.
 *
 * @example
 * ```ts
 * const log = new Logger("info", (line) => console.log(line));
 * log.info("user.joined", { user: "u1", conn: 3 }); // 2026-... INFO user.joined user=u1 conn=3
 * ```
 * @module
 */
import type { LogLevel } from "../core/types.ts";

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** True for a valid --log-level value. */
export function isLogLevel(s: string): s is LogLevel {
  return Object.hasOwn(ORDER, s);
}

function fmt(v: string | number | boolean): string {
  const s = String(v).replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f]/g,
    (c) => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"),
  );
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s;
}

/** A leveled line logger. */
export class Logger {
  constructor(
    readonly level: LogLevel,
    private readonly sink: (line: string) => void = (l) => console.error(l),
    private readonly clock: () => number = Date.now,
  ) {}

  /** Log at `level` if enabled. */
  log(level: LogLevel, event: string, fields: Record<string, string | number | boolean> = {}): void {
    if (ORDER[level] < ORDER[this.level]) return;
    let line = `${new Date(this.clock()).toISOString()} ${level.toUpperCase()} ${event}`;
    for (const [k, v] of Object.entries(fields)) line += ` ${k}=${fmt(v)}`;
    this.sink(line);
  }

  debug(event: string, fields?: Record<string, string | number | boolean>): void {
    this.log("debug", event, fields);
  }
  info(event: string, fields?: Record<string, string | number | boolean>): void {
    this.log("info", event, fields);
  }
  warn(event: string, fields?: Record<string, string | number | boolean>): void {
    this.log("warn", event, fields);
  }
  error(event: string, fields?: Record<string, string | number | boolean>): void {
    this.log("error", event, fields);
  }
}
