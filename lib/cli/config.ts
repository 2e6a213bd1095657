/**
 * Server configuration from flags, the environment and a .env file (in that order of precedence).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { parseEnv } from "node:util";
import { DEFAULT_LIMITS, type Limits, type LogLevel } from "../core/types.ts";
import { isLogLevel } from "../net/log.ts";

/** A user-facing configuration error (printed without a stack, exit code 2). */
export class UsageError extends Error {}

/** Resolved `socp serve` settings. */
export interface ServeConfig {
  host: string;
  port: number;
  dataDir: string;
  publicHost?: string;
  logLevel: LogLevel;
  limits: Limits;
  labWeakKeys: boolean;
  labReplay: boolean;
  nodePassphrase?: string;
}

/** Read a .env file into a plain object; a missing default file is fine, a missing named file is an error. */
export function loadEnvFile(path: string | undefined): Record<string, string> {
  const file = path ?? ".env";
  if (!existsSync(file)) {
    if (path) throw new UsageError(`--env-file ${path}: file not found`);
    return {};
  }
  try {
    return parseEnv(readFileSync(file, "utf8")) as Record<string, string>;
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
  }
}

/** Look a setting up: environment first, then the .env file. */
export function envLookup(fileEnv: Record<string, string>): (name: string) => string | undefined {
  return (name) => Deno.env.get(name) ?? fileEnv[name];
}

/** Parse an integer setting with bounds; `what` names it in the error. */
export function intSetting(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\s*-?\d+\s*$/.test(text) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`invalid ${what} "${text}": expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function truthy(v: string | undefined): boolean {
  return !!v && /^(1|true|yes|on)$/i.test(v.trim());
}

/** Build the serve config from parsed flags and the environment. */
export function serveConfig(flags: Record<string, string | undefined>): ServeConfig {
  const env = envLookup(loadEnvFile(flags["env-file"]));
  const pick = (flag: string, name: string) => flags[flag] ?? env(name);
  const portText = pick("port", "SOCP_PORT");
  const logLevel = pick("log-level", "SOCP_LOG_LEVEL") ?? "info";
  if (!isLogLevel(logLevel)) {
    throw new UsageError(`invalid --log-level "${logLevel}": use debug, info, warn or error`);
  }
  const maxFrame = env("SOCP_MAX_FRAME_BYTES");
  const fresh = env("SOCP_FRESHNESS_SECONDS");
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    ...(maxFrame
      ? { maxFrameBytes: intSetting(maxFrame, "SOCP_MAX_FRAME_BYTES", 1024, 64 * 1024 * 1024) }
      : {}),
    ...(fresh ? { freshnessMs: intSetting(fresh, "SOCP_FRESHNESS_SECONDS", 1, 365 * 86400) * 1000 } : {}),
  };
  return {
    host: pick("host", "SOCP_HOST") ?? "0.0.0.0",
    port: portText === undefined ? 8765 : intSetting(portText, "--port", 0, 65535),
    dataDir: pick("data", "SOCP_DATA") ?? "./socp-data",
    publicHost: pick("public-host", "SOCP_PUBLIC_HOST"),
    logLevel,
    limits,
    labWeakKeys: truthy(env("SOCP_LAB_WEAK_KEYS")) || truthy(env("SOCP_BACKDOOR_WEAK_KEYS")),
    labReplay: truthy(env("SOCP_LAB_REPLAY")) || truthy(env("SOCP_BACKDOOR_REPLAY")),
    nodePassphrase: env("SOCP_NODE_PASSPHRASE") || undefined,
  };
}
