/**
 * Start a node from a data directory: the Deno adapter around {@linkcode createNode} (create_node.ts), which
 * does the wiring. This file adds what needs files and the runtime: the database and the identity key in the
 * data directory (the key sealed under a passphrase or the `node.secret` file), and garbage collection when idle.
 *
 * @example
 * ```ts
 * const node = await startNode({ host: "127.0.0.1", port: 0, dataDir: "./socp-data" });
 * console.log(node.port, node.serverId);
 * await node.close();
 * ```
 * @module
 */
import { join } from "node:path";
import type { FederationConfig, Limits, LogLevel } from "../core/types.ts";
import type { SealSecret } from "../crypto/keyfile.ts";
import { Store } from "../store/sqlite.ts";
import { createNode, type NodeActivity, type NodeParts, type RunningNode } from "./create_node.ts";
import { checkPortFree, denoTransportWith, PortInUse, type Transport } from "./transport.ts";
import {
  DataDirInUse,
  fingerprint,
  type Identity,
  loadOrCreateIdentity,
  lockDataDir,
  nodeSecret,
  secureDataDir,
} from "./identity.ts";
import { readSoftware } from "./probe.ts";
import { Logger } from "./log.ts";

/** Options for {@linkcode startNode}. */
export interface NodeOptions {
  /** Address to listen on (default 0.0.0.0, every interface). */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Directory for the database, identity key and secrets (created if missing). */
  dataDir: string;
  /** Host name others should use to reach us (status page, bootstrap entry). */
  publicHost?: string;
  /** Least severe level logged (default "info"). */
  logLevel?: LogLevel;
  /** Where log lines go (default: stderr). */
  logSink?: (line: string) => void;
  /** Overrides of {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<Limits>;
  /** Overrides of {@linkcode DEFAULT_FEDERATION} (bootstrap list, introducer mode, timers). */
  federation?: Partial<FederationConfig>;
  /** Accept RSA keys shorter than 4096 bits (PROFILE §13 lab mode). */
  labWeakKeys?: boolean;
  /** Accept replays of old frames (PROFILE §13 lab mode). */
  labReplay?: boolean;
  /** Passphrase that seals the identity key (default: a random secret in <data>/node.secret). */
  nodePassphrase?: string;
  /**
   * PEM certificate (chain) and private key: serve `https://` and `wss://` on the port instead of plain HTTP.
   * TLS keeps metadata private; server identity is still the pinned RSA key.
   */
  tls?: { cert: string; key: string };
  /**
   * PEM certificates of private CAs trusted for this node's own `wss://` and `https://` dials, besides the
   * system's roots (`--ca-cert`).
   */
  caCerts?: string[];
}

export { DataDirInUse, PortInUse };
export type { RunningNode };

/**
 * Start a node with its files: check the port, secure and lock the data directory, open (or create) the database
 * and the identity in it, then compose the node from the Deno parts ({@linkcode createNode}) with garbage
 * collection when idle. Rejects with {@linkcode PortInUse} or a clear error when it cannot start.
 */
export async function startNode(opts: NodeOptions): Promise<RunningNode> {
  const startedAt = Date.now();
  const log = new Logger(opts.logLevel ?? "info", opts.logSink);
  const host = opts.host ?? "0.0.0.0";
  // A busy port is said before anything is written (no data directory, no database, no key).
  checkPortFree(host, opts.port ?? 8765);
  for (const fix of secureDataDir(opts.dataDir)) {
    if (fix.ok) log.warn("data_dir.mode_fixed", { path: fix.path, from: fix.from, to: fix.to });
    else log.error("data_dir.mode_open", { path: fix.path, mode: fix.from, error: fix.to });
  }
  const lock = lockDataDir(opts.dataDir);
  const dbPath = join(opts.dataDir, "socp.db");
  let store: Store;
  try {
    store = Store.open(dbPath);
  } catch (e) {
    lock.close();
    throw e;
  }
  let identity: Identity;
  let secret: SealSecret;
  try {
    identity = await loadOrCreateIdentity(store, opts.dataDir, {
      passphrase: opts.nodePassphrase,
      keyBits: 4096,
      now: startedAt,
    });
    if (identity.created) {
      log.info("identity.created", {
        server_id: identity.serverId,
        fingerprint: await fingerprint(identity.key.spki),
      });
    }
    secret = await nodeSecret(opts.dataDir, opts.nodePassphrase);
  } catch (e) {
    store.close();
    lock.close();
    throw e;
  }
  const dialer = denoTransportWith({ caCerts: opts.caCerts });
  // A TLS dial that fails says why (unknown CA, wrong name), once per failure, as a warning.
  const transport: Transport = {
    listen: dialer.listen,
    dial: (url, timeoutMs, on) =>
      dialer.dial(url, timeoutMs, {
        onOpen: on.onOpen,
        onFail: (reason) => {
          if (url.startsWith("wss:") && /TLS|certificate/.test(reason)) {
            log.warn("dial.tls_failed", { url, reason });
          }
          on.onFail(reason);
        },
      }),
  };
  return await createNode({
    key: identity.key,
    serverId: identity.serverId,
    secret,
    store,
    storeName: `the database ${dbPath}`,
    transport,
    ...(dialer.client ? { readSoftware: (url: string) => readSoftware(url, dialer.client) } : {}),
    onClosed: () => {
      dialer.close();
      lock.close();
    },
    host,
    port: opts.port,
    publicHost: opts.publicHost,
    tls: opts.tls,
    logLevel: opts.logLevel,
    logSink: opts.logSink,
    limits: opts.limits,
    federation: opts.federation,
    labWeakKeys: opts.labWeakKeys,
    labReplay: opts.labReplay,
    onIdle: idleCollector(log),
    onBytes: busyCollector(log),
  });
}

/** Quiet for this long (no frame in or out, no effect waiting) before an idle collection. */
const IDLE_GC_QUIET_MS = 2_000;
/** Heap growth, or frame bytes moved, since the last idle collection that make the next one worth its pause. */
const IDLE_GC_GROWTH = 16 * 1024 * 1024;

/** Bytes of frames received and sent between two collections while the node is busy. */
const BUSY_GC_BYTES = 8 * 1024 * 1024;

/** V8's `gc()` when the runtime exposes it (`--expose-gc`). */
function exposedGc(): ((options?: Record<string, string>) => void) | undefined {
  const gc = (globalThis as { gc?: (options?: Record<string, string>) => void }).gc;
  return typeof gc === "function" ? gc : undefined;
}

/**
 * Garbage collection while the node is busy moving big frames. A received or sent frame's text lives outside
 * V8's small heap (large-object pages and the runtime's buffers), so V8 does not feel the pressure and collects
 * late: a user sending DMs of 200 KB to someone who never reads grew the node by ~120 MiB before V8 collected
 * (tests/bench/hostile_memory.ts, docs/BENCHMARKS.md). One full collection per `BUSY_GC_BYTES` (8 MiB) of frames
 * in or out bounds that; each paused the node 8-12 ms in tests/e2e/idle_gc_test.ts, well under what receiving,
 * checking and re-signing 8 MiB of frames costs. Without `--expose-gc` this does nothing.
 */
function busyCollector(log: Logger): NodeParts["onBytes"] {
  const gc = exposedGc();
  if (!gc) return undefined;
  let runs = 0;
  const run = () => {
    const t0 = performance.now();
    gc({ type: "major", execution: "sync" });
    runs++;
    log.debug("memory.busy_collection", { runs, ms: Math.round(performance.now() - t0) });
  };
  return { bytes: BUSY_GC_BYTES, run };
}

/**
 * Garbage collection when the node goes quiet. V8 collects when it needs room, not when the program is idle, so
 * the garbage of a busy spell (a burst of hellos fans out N² frames) stays in the heap, and in the resident memory,
 * until the next busy spell. When V8 lets the program ask (`--expose-gc`, which `deno task start` and the compiled
 * binary set), the node runs one full collection after two quiet seconds if the heap grew by 16 MiB since the
 * last one, or 16 MiB of frames went in or out (the busy collections then kept the heap small, but the pages its
 * garbage took are given back only by this memory-reducing one). Without the flag this does nothing.
 */
function idleCollector(log: Logger): NodeParts["onIdle"] {
  const gc = exposedGc();
  if (!gc) return undefined;
  let floor = Deno.memoryUsage().heapUsed;
  let bytesAt = 0;
  const run = (view: NodeActivity) => {
    const before = Deno.memoryUsage().heapUsed;
    const moved = view.frameBytes() - bytesAt;
    if (before - floor < IDLE_GC_GROWTH && moved < IDLE_GC_GROWTH) return;
    bytesAt = view.frameBytes();
    const t0 = performance.now();
    // "last-resort": V8's memory-reducing collection, which also gives the emptied pages back to the system.
    gc({ type: "major", execution: "sync", flavor: "last-resort" });
    floor = Deno.memoryUsage().heapUsed;
    log.info("memory.collected", {
      heap_before_mib: Math.round(before / 1048576),
      heap_after_mib: Math.round(floor / 1048576),
      frames_mib: Math.round(moved / 1048576),
      ms: Math.round(performance.now() - t0),
    });
  };
  return { afterMs: IDLE_GC_QUIET_MS, run };
}
