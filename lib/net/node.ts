/**
 * Start a node: open the store and the identity, build the reducer's state, and wire the parts together: the
 * effect executor ({@linkcode createExecutor}, executor.ts) over the store and the transport (transport.ts),
 * the HTTP routes (http.ts), the clock's tick and the shutdown.
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
import { initState } from "../core/reduce.ts";
import {
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type FederationConfig,
  type Limits,
  type LogLevel,
  type State,
} from "../core/types.ts";
import { sameKeyMaterial, spkiToB64Pem } from "../protocol/keys.ts";
import { PrivateKey } from "../crypto/rsa.ts";
import { openPrivateKey } from "../crypto/keyfile.ts";
import { Store } from "../store/sqlite.ts";
import { Counters, httpHandler } from "./http.ts";
import { createExecutor, type Executor } from "./executor.ts";
import { checkPortFree, denoTransportWith, type Listener, PortInUse, type Transport } from "./transport.ts";
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
import { bootstrapEntry } from "../web/routes.ts";
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

/** A running node. */
export interface RunningNode {
  /** The port listened on (the one picked when 0 was asked). */
  port: number;
  /** The address listened on. */
  host: string;
  /** Our server id (an introducer may assign another one when we join). */
  readonly serverId: string;
  /** Our public key (base64url SPKI). */
  publicKey: string;
  /** The entry other servers pass to `--bootstrap` to join us (`wss://…` when we serve TLS). */
  bootstrap: string;
  /** Ids of the servers we are linked to. */
  linkedServers(): string[];
  /** Stop accepting, close every connection, close the database. */
  close(): Promise<void>;
  /**
   * Resolves when the server has stopped; rejects when it stopped by itself because a store write failed
   * (crash-only: restart it, and it resumes from the database).
   */
  finished: Promise<void>;
}

export { DataDirInUse, PortInUse };

/** The shortest WebSocket ping timeout (seconds) the node gives an accepted connection. */
const PING_TIMEOUT_MIN_S = 5;

/** Start a node. Rejects with {@linkcode PortInUse} or a clear error when it cannot start. */
export async function startNode(opts: NodeOptions): Promise<RunningNode> {
  const startedAt = Date.now();
  const log = new Logger(opts.logLevel ?? "info", opts.logSink);
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const labModes = [...(opts.labWeakKeys ? ["weak-keys"] : []), ...(opts.labReplay ? ["replay"] : [])];

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
  const closeStore = () => {
    store.close();
    lock.close();
  };
  let identity: Identity;
  try {
    identity = await loadOrCreateIdentity(store, opts.dataDir, {
      passphrase: opts.nodePassphrase,
      keyBits: 4096,
      now: startedAt,
    });
  } catch (e) {
    closeStore();
    throw e;
  }
  const fp = await fingerprint(identity.key.spki);
  if (identity.created) log.info("identity.created", { server_id: identity.serverId, fingerprint: fp });

  const federation: FederationConfig = { ...DEFAULT_FEDERATION, ...opts.federation };
  // An entry with our own key is this node itself (the same data directory, or a list that names every server):
  // dialing it would only find ourselves. Say so, and leave it out.
  const selfEntries = federation.bootstrap.filter((e) => sameKeyMaterial(e.pubkey, identity.key.publicKey));
  if (selfEntries.length) {
    federation.bootstrap = federation.bootstrap.filter((e) => !selfEntries.includes(e));
    for (const e of selfEntries) {
      log.warn("bootstrap.self", {
        entry: `${e.host}:${e.port}`,
        data: opts.dataDir,
        note: federation.bootstrap.length
          ? "this entry is this node itself (same server key); skipped"
          : "the only bootstrap entry is this node itself (same server key, same data directory?): a second " +
            "server needs its own --data DIR; serving as introducer",
      });
    }
  }
  const secret = await nodeSecret(opts.dataDir, opts.nodePassphrase);
  // The public channel's private key, when this node holds it (sealed like the identity key).
  let channelKey: PrivateKey | null = null;
  const sealedChannel = store.getChannelKey();
  if (sealedChannel) {
    try {
      channelKey = await PrivateKey.fromPkcs8(await openPrivateKey(sealedChannel.sealed, secret));
    } catch {
      closeStore();
      throw new Error("cannot open the public channel key with this node's passphrase");
    }
  }
  const loaded = store.load();
  const state: State = initState(
    {
      serverId: identity.serverId,
      serverPub: identity.key.publicKey,
      serverPubPem: spkiToB64Pem(identity.key.spki),
      limits,
      federation,
      labWeakKeys: !!opts.labWeakKeys,
      labReplay: !!opts.labReplay,
    },
    loaded,
  );
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
  let closed: Promise<void> | undefined;
  /** Why the node stopped by itself (a failed store write); `finished` rejects with it. */
  let fatal: Error | undefined;
  const metrics = new Counters();
  const ex = createExecutor({
    state,
    store,
    transport,
    key: identity.key,
    secret,
    channelKey,
    limits,
    log,
    counters: metrics,
    ...(dialer.client ? { readSoftware: (url: string) => readSoftware(url, dialer.client) } : {}),
    onStoreFailed: (e) => {
      // Crash-only: the node stops instead of running with memory ahead of disk.
      if (fatal) return;
      fatal = new Error(
        `cannot write the database ${dbPath} (${
          String(e).split("\n")[0]
        }): the node stopped so that it never ` +
          "runs ahead of what is on disk; fix the cause (disk full, permissions, another process holding the " +
          "database) and start it again: it resumes from the database",
      );
      void close();
    },
  });
  const dispatch = ex.dispatch;

  // PROFILE §15 liveness: the WebSocket layer pings every connection at half this interval and closes it when
  // no pong comes back within it, so a peer that heartbeats only with pings is judged on its pongs. Users are
  // pinged too (the role is not known at the upgrade), so never less than PING_TIMEOUT_MIN_S: a client whose
  // event loop is busy for a second (decrypting a file) must not be cut by a short link timeout.
  const pingTimeoutS = Math.max(PING_TIMEOUT_MIN_S, Math.ceil(federation.linkTimeoutMs / 1000));

  let listener: Listener;
  try {
    listener = transport.listen(
      { host, port: opts.port ?? 8765, ...(opts.tls ? { tls: opts.tls } : {}) },
      (req, addr, accept) => {
        if (!accept) return http(req);
        const pending = ex.channelPending();
        const upgrade = () => ex.upgrade(addr, accept, pingTimeoutS);
        return pending ? pending.then(upgrade) : upgrade();
      },
    );
  } catch (e) {
    closeStore();
    dialer.close();
    throw e;
  }
  const boundPort = listener.port;

  const publicHost = opts.publicHost ?? (host === "0.0.0.0" || host === "::" ? "localhost" : host);
  const wsUrl = `${opts.tls ? "wss" : "ws"}://${
    publicHost.includes(":") ? `[${publicHost}]` : publicHost
  }:${boundPort}`;
  const bootstrap = bootstrapEntry(publicHost, boundPort, identity.key.publicKey, !!opts.tls);

  const http = httpHandler({
    state: ex.state,
    startedAt,
    fingerprint: fp,
    labModes,
    tls: !!opts.tls,
    wsUrl: () => wsUrl,
    bootstrap: () => bootstrap,
    counters: metrics,
    signatures: ex.signatures,
    connections: ex.connections,
    maxUnsent: ex.maxUnsent,
    effectsWaiting: ex.effectsWaiting,
  });

  const tickMs = Math.max(
    20,
    Math.min(
      1000,
      Math.floor(limits.firstFrameMs / 4),
      Math.floor(federation.heartbeatMs / 4),
      Math.floor(federation.linkTimeoutMs / 4),
    ),
  );
  const idleGc = idleCollector(metrics, ex, log);
  const ticker = setInterval(() => {
    const now = Date.now();
    dispatch({ kind: "tick", now });
    idleGc(now);
  }, tickMs);
  const labWarn = () => {
    if (labModes.length) {
      log.warn("lab_mode.on", { modes: labModes.join(","), note: "deliberately weakened node" });
    }
  };
  labWarn();
  const labTimer = labModes.length ? setInterval(labWarn, 60_000) : undefined;

  const advertiseHost = opts.publicHost ?? (host === "0.0.0.0" || host === "::" ? "localhost" : host);
  dispatch({ kind: "started", now: Date.now(), host: advertiseHost, port: boundPort });
  ex.started();
  await ex.channelPending(); // a first server is ready once its channel key exists (PROFILE §8)
  log.info("node.listening", {
    host,
    port: boundPort,
    server_id: ex.state().config.serverId,
    fingerprint: fp,
    url: wsUrl,
    users_known: ex.state().users.size,
  });
  log.info("node.bootstrap_entry", { entry: bootstrap, note: "other servers join with --bootstrap ENTRY" });

  const finished = listener.finished.then(() => {
    if (fatal) throw fatal;
  });
  finished.catch(() => {}); // handled by whoever awaits it; never an unhandled rejection

  function close(): Promise<void> {
    closed ??= (async () => {
      clearInterval(ticker);
      if (labTimer) clearInterval(labTimer);
      ex.stop();
      await listener.close();
      dialer.close();
      try {
        store.close();
      } catch (e) {
        log.error("store.close_failed", { error: String(e) });
      }
      lock.close();
      log.info("node.stopped", { server_id: ex.state().config.serverId });
    })();
    return closed;
  }

  return {
    port: boundPort,
    host,
    get serverId() {
      return ex.state().config.serverId;
    },
    publicKey: state.config.serverPub,
    bootstrap,
    linkedServers: () => [...ex.state().links.keys()],
    finished,
    close,
  };
}

/** Quiet for this long (no frame in or out, no effect waiting) before an idle collection. */
const IDLE_GC_QUIET_MS = 2_000;
/** Heap growth since the last collection that makes an idle collection worth its pause. */
const IDLE_GC_GROWTH = 16 * 1024 * 1024;

/**
 * Garbage collection when the node goes quiet. V8 collects when it needs room, not when the program is idle, so
 * the garbage of a busy spell (a burst of hellos fans out N² frames) stays in the heap, and in the resident memory,
 * until the next busy spell. When V8 lets the program ask (`--expose-gc`, which `deno task start` and the compiled
 * binary set), the node runs one full collection after two quiet seconds if the heap grew by 16 MiB since the
 * last one. Without the flag this does nothing.
 */
function idleCollector(metrics: Counters, ex: Executor, log: Logger): (now: number) => void {
  const gc = (globalThis as { gc?: (options?: Record<string, string>) => void }).gc;
  if (typeof gc !== "function") return () => {};
  let frames = -1;
  let quietSince = 0;
  let floor = Deno.memoryUsage().heapUsed;
  return (now) => {
    const f = metrics.framesIn + metrics.framesOut;
    if (f !== frames || ex.effectsWaiting() > 0) {
      frames = f;
      quietSince = now;
      return;
    }
    if (now - quietSince < IDLE_GC_QUIET_MS) return;
    const before = Deno.memoryUsage().heapUsed;
    if (before - floor < IDLE_GC_GROWTH) return;
    const t0 = performance.now();
    // "last-resort": V8's memory-reducing collection, which also gives the emptied pages back to the system.
    gc({ type: "major", execution: "sync", flavor: "last-resort" });
    floor = Deno.memoryUsage().heapUsed;
    quietSince = now; // at most one collection per quiet spell unless the heap grows again
    log.info("memory.collected", {
      heap_before_mib: Math.round(before / 1048576),
      heap_after_mib: Math.round(floor / 1048576),
      ms: Math.round(performance.now() - t0),
    });
  };
}
