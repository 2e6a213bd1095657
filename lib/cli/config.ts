/**
 * Server configuration from flags, the environment and a .env file (in that order of precedence).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { parseEnv } from "node:util";
import {
  type BootstrapEntry,
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type FederationConfig,
  type Limits,
  type LogLevel,
} from "../core/types.ts";
import { keyPolicy, parseAcceptableKey } from "../protocol/keys.ts";
import { isLogLevel } from "../net/log.ts";
import { parseYamlLite } from "./yaml_lite.ts";

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
  federation: FederationConfig;
  labWeakKeys: boolean;
  labReplay: boolean;
  nodePassphrase?: string;
  /** PEM certificate chain and private key: serve https:// and wss:// on the same port. */
  tls?: { cert: string; key: string };
  /** PEM certificates of private CAs trusted for our own wss:// and https:// dials (`--ca-cert`). */
  caCerts?: string[];
  /** Settings that were ignored, to be logged as warnings when the node starts. */
  warnings: { event: string; fields: Record<string, string> }[];
}

/** Lab-mode variables (PROFILE §13) and their aliases: honoured only from a flag or the real environment. */
export const LAB_VARIABLES: readonly string[] = [
  "SOCP_LAB_WEAK_KEYS",
  "SOCP_BACKDOOR_WEAK_KEYS",
  "SOCP_LAB_REPLAY",
  "SOCP_BACKDOOR_REPLAY",
];

/** The longest freshness window (`SOCP_FRESHNESS_SECONDS`) accepted: one hour. */
export const MAX_FRESHNESS_SECONDS = 3600;

/** Read `--ca-cert FILE`: the PEM certificates in it (one CA or a bundle), or a clear error. */
export function caCertSetting(file: string | undefined): string[] | undefined {
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read --ca-cert ${file}: ${(e as Error).message.split("\n")[0]}`);
  }
  const certs = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!certs) throw new UsageError(`--ca-cert ${file} is not a PEM file (no BEGIN CERTIFICATE block)`);
  return certs.map((c) => c + "\n");
}

/** Read `--tls-cert` / `--tls-key` (both or neither); the files' PEM text, or a clear error. */
export function tlsSetting(certFile?: string, keyFile?: string): { cert: string; key: string } | undefined {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) {
    throw new UsageError("TLS needs both --tls-cert FILE and --tls-key FILE (PEM), or neither");
  }
  const read = (file: string, flag: string, marker: RegExp) => {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new UsageError(`cannot read ${flag} ${file}: ${(e as Error).message.split("\n")[0]}`);
    }
    if (!marker.test(text)) {
      throw new UsageError(`${flag} ${file} is not a PEM file (no ${marker.source} block)`);
    }
    return text;
  };
  return {
    cert: read(certFile, "--tls-cert", /-----BEGIN CERTIFICATE-----/),
    key: read(keyFile, "--tls-key", /-----BEGIN [A-Z ]*PRIVATE KEY-----/),
  };
}

/**
 * Parse one bootstrap entry: `host:port#PUBKEY` (IPv6 hosts in brackets), or a URL `ws://host:port/path#PUBKEY` /
 * `wss://host[:port]/path#PUBKEY` for servers that serve WebSocket on a path or behind TLS (PROFILE §15).
 */
export function parseBootstrapEntry(text: string, weakKeys = false): BootstrapEntry {
  const url = /^\s*(wss?):\/\/([^#\s]+)#(\S+)\s*$/i.exec(text);
  if (url) {
    let u: URL;
    try {
      u = new URL(`${url[1].toLowerCase()}://${url[2]}`);
    } catch {
      throw new UsageError(`bootstrap entry "${text.slice(0, 60)}" is not a valid ws:// or wss:// URL`);
    }
    if (u.username || u.password || u.search) {
      throw new UsageError(
        `bootstrap entry "${text.slice(0, 60)}": a URL entry may carry a host, a port and a path only`,
      );
    }
    const tls = u.protocol === "wss:";
    const port = u.port || (tls ? "443" : "80");
    const host = u.hostname.replace(/^\[|\]$/g, "");
    const entry = checkedEntry(host, port, url[3], `bootstrap entry ${u.host}`, weakKeys);
    const path = u.pathname === "/" ? "" : u.pathname;
    return { ...entry, ...(path ? { path } : {}), ...(tls ? { tls } : {}) };
  }
  const m = /^\s*(\[[^\]]+\]|[^:#\s/]+):(\d+)#(\S+)\s*$/.exec(text);
  if (!m) {
    throw new UsageError(
      `bootstrap entry "${
        text.slice(0, 60)
      }" must look like host:port#PUBKEY or ws://host:port/path#PUBKEY (see socp info)`,
    );
  }
  return checkedEntry(m[1].replace(/^\[|\]$/g, ""), m[2], m[3], `bootstrap entry ${m[1]}:${m[2]}`, weakKeys);
}

function checkedEntry(
  host: string,
  port: unknown,
  pubkey: unknown,
  what: string,
  weakKeys: boolean,
): BootstrapEntry {
  const p = intSetting(String(port), `port of ${what}`, 1, 65535);
  const k = parseAcceptableKey(pubkey, keyPolicy(weakKeys));
  if (!k.ok) throw new UsageError(`${what}: pubkey: ${k.reason}`);
  return { host, port: p, pubkey: pubkey as string };
}

/** Read the standard's YAML bootstrap file (`bootstrap_servers: [{host, port, pubkey}]`). */
export function loadBootstrapFile(path: string, weakKeys = false): BootstrapEntry[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read bootstrap file ${path}: ${(e as Error).message.split("\n")[0]}`);
  }
  const parsed = parseYamlLite(text);
  if (!parsed.ok) throw new UsageError(`cannot read bootstrap file ${path}: ${parsed.error}`);
  const doc = parsed.value;
  const list = (doc as { bootstrap_servers?: unknown } | null)?.bootstrap_servers;
  if (!Array.isArray(list)) throw new UsageError(`${path}: expected a list under bootstrap_servers:`);
  return list.map((e, i) => {
    const o = (e ?? {}) as Record<string, unknown>;
    if (typeof o.host !== "string" || !o.host) throw new UsageError(`${path}: entry ${i + 1} has no host`);
    return checkedEntry(o.host, o.port, o.pubkey, `${path} entry ${i + 1}`, weakKeys);
  });
}

/** Parse a duration in seconds (fractions allowed) into milliseconds. */
export function secondsSetting(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text) || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(
      `invalid ${what} "${text}": expected seconds from ${min} to ${max} (fractions allowed)`,
    );
  }
  return Math.round(n * 1000);
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

/** Integer limits settable by flag and/or environment variable (see `socp serve --help` and docs/DEPLOY.md). */
export const LIMIT_KNOBS: readonly {
  key: "maxUnsentBytes" | "helloPerSec" | "helloBurst" | "maxConnsPerAddr" | "ratePerSec" | "rateBurst";
  env: string;
  flag?: string;
  min: number;
  max: number;
}[] = [
  {
    key: "maxUnsentBytes",
    env: "SOCP_MAX_UNSENT_BYTES",
    flag: "max-unsent-bytes",
    min: 64 * 1024,
    max: 2 ** 32,
  },
  { key: "helloPerSec", env: "SOCP_HELLO_RATE", flag: "hello-rate", min: 1, max: 1_000_000 },
  { key: "helloBurst", env: "SOCP_HELLO_BURST", flag: "hello-burst", min: 1, max: 1_000_000 },
  {
    key: "maxConnsPerAddr",
    env: "SOCP_MAX_CONNS_PER_ADDR",
    flag: "max-conns-per-addr",
    min: 1,
    max: 1_000_000,
  },
  { key: "ratePerSec", env: "SOCP_RATE_PER_SEC", min: 1, max: 1_000_000 },
  { key: "rateBurst", env: "SOCP_RATE_BURST", min: 1, max: 1_000_000 },
];

/** Build the serve config from parsed flags and the environment. */
export function serveConfig(
  flags: Record<string, string | boolean | string[] | undefined>,
): ServeConfig {
  const fileEnv = loadEnvFile(flags["env-file"] as string | undefined);
  const env = envLookup(fileEnv);
  // Lab modes weaken the node on purpose: only a flag or a variable set in the real environment turns them on,
  // never a .env file (a stray one must not switch off replay protection).
  const labEnv = (name: string) => truthy(Deno.env.get(name));
  const warnings: ServeConfig["warnings"] = LAB_VARIABLES.filter((n) => n in fileEnv).map((n) => ({
    event: "config.lab_mode_ignored",
    fields: {
      variable: n,
      file: (flags["env-file"] as string | undefined) ?? ".env",
      note: "lab modes are taken only from a flag or the real environment, never from a .env file",
    },
  }));
  const pick = (flag: string, name: string) => (flags[flag] as string | undefined) ?? env(name);
  const portText = pick("port", "SOCP_PORT");
  const logLevel = pick("log-level", "SOCP_LOG_LEVEL") ?? "info";
  if (!isLogLevel(logLevel)) {
    throw new UsageError(`invalid --log-level "${logLevel}": use debug, info, warn or error`);
  }
  const maxFrame = env("SOCP_MAX_FRAME_BYTES");
  const fresh = env("SOCP_FRESHNESS_SECONDS");
  if (fresh !== undefined && /^\s*\d+\s*$/.test(fresh) && Number(fresh) > MAX_FRESHNESS_SECONDS) {
    throw new UsageError(
      `SOCP_FRESHNESS_SECONDS "${fresh.trim()}" is too long: at most ${MAX_FRESHNESS_SECONDS} (one hour); a longer ` +
        "window lets captured frames be replayed for longer",
    );
  }
  const limits: Limits = {
    ...DEFAULT_LIMITS,
    ...(maxFrame
      ? { maxFrameBytes: intSetting(maxFrame, "SOCP_MAX_FRAME_BYTES", 1024, 64 * 1024 * 1024) }
      : {}),
    ...(fresh
      ? { freshnessMs: intSetting(fresh, "SOCP_FRESHNESS_SECONDS", 1, MAX_FRESHNESS_SECONDS) * 1000 }
      : {}),
  };
  for (const k of LIMIT_KNOBS) {
    const text = k.flag ? pick(k.flag, k.env) : env(k.env);
    if (text !== undefined) limits[k.key] = intSetting(text, k.flag ? `--${k.flag}` : k.env, k.min, k.max);
  }
  const labWeakKeys = flags["lab-weak-keys"] === true || labEnv("SOCP_LAB_WEAK_KEYS") ||
    labEnv("SOCP_BACKDOOR_WEAK_KEYS");
  const flagEntries = (flags.bootstrap as string[] | undefined) ?? [];
  const envEntries = flagEntries.length ? [] : (env("SOCP_BOOTSTRAP") ?? "").split(/[,\s]+/).filter(Boolean);
  const file = pick("bootstrap-file", "SOCP_BOOTSTRAP_FILE");
  const bootstrap = [
    ...[...flagEntries, ...envEntries].map((e) => parseBootstrapEntry(e, labWeakKeys)),
    ...(file ? loadBootstrapFile(file, labWeakKeys) : []),
  ];
  const hb = pick("heartbeat-interval", "SOCP_HEARTBEAT_INTERVAL");
  const lt = pick("link-timeout", "SOCP_LINK_TIMEOUT");
  const federation: FederationConfig = {
    ...DEFAULT_FEDERATION,
    bootstrap,
    introducer: flags.introducer === true || truthy(env("SOCP_INTRODUCER")),
    ...(hb ? { heartbeatMs: secondsSetting(hb, "--heartbeat-interval", 0.05, 3600) } : {}),
    ...(lt ? { linkTimeoutMs: secondsSetting(lt, "--link-timeout", 0.1, 86400) } : {}),
    allowedServerKeys: (env("SOCP_ALLOWED_SERVER_KEYS") ?? "").split(/[,\s]+/).filter(Boolean),
  };
  if (federation.linkTimeoutMs <= federation.heartbeatMs) {
    throw new UsageError(
      `--link-timeout (${federation.linkTimeoutMs / 1000} s) must be longer than --heartbeat-interval (${
        federation.heartbeatMs / 1000
      } s)`,
    );
  }
  return {
    federation,
    host: pick("host", "SOCP_HOST") ?? "0.0.0.0",
    port: portText === undefined ? 8765 : intSetting(portText, "--port", 0, 65535),
    dataDir: pick("data", "SOCP_DATA") ?? "./socp-data",
    publicHost: pick("public-host", "SOCP_PUBLIC_HOST"),
    logLevel,
    limits,
    labWeakKeys,
    labReplay: flags["lab-replay"] === true || labEnv("SOCP_LAB_REPLAY") || labEnv("SOCP_BACKDOOR_REPLAY"),
    nodePassphrase: env("SOCP_NODE_PASSPHRASE") || undefined,
    tls: tlsSetting(pick("tls-cert", "SOCP_TLS_CERT"), pick("tls-key", "SOCP_TLS_KEY")),
    caCerts: caCertSetting(pick("ca-cert", "SOCP_CA_CERT")),
    warnings,
  };
}
