/**
 * Compose a node from its parts: {@linkcode createNode} takes the transport, the store, the clock, the timers
 * and the identity key, builds the reducer's state from the store, and wires the effect executor, the HTTP routes,
 * the clock (one timer armed for the reducer's next deadline) and the shutdown. It touches no file and no environment: {@linkcode startNode} (node.ts) is the
 * Deno adapter around it (data directory, identity and secret files, idle garbage collection). Every part has a
 * default (the Deno transport, a SQLite store in memory, `Date.now`, `setTimeout`), so an embedder can run a
 * node entirely in memory, or on another transport.
 *
 * @example A node in memory (mod.ts has the same example, run as a test)
 * ```ts
 * import { createNode, generateKeyPair } from "../../mod.ts";
 *
 * const node = await createNode({ key: await generateKeyPair(4096), host: "127.0.0.1", port: 0 });
 * console.log(`listening on ${node.port}, no file written`);
 * await node.close();
 * ```
 * @module
 */
import { initState, nextDeadline } from "../core/reduce.ts";
import {
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type FederationConfig,
  type Limits,
  type Loaded,
  type LogLevel,
  type State,
} from "../core/types.ts";
import { sameKeyMaterial, spkiToB64Pem } from "../protocol/keys.ts";
import { PrivateKey } from "../crypto/rsa.ts";
import { openPrivateKey, type SealedKey, type SealSecret } from "../crypto/keyfile.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import { Store } from "../store/sqlite.ts";
import { httpHandler } from "./http.ts";
import { Counters } from "./counters.ts";
import { type ActivityHookParts, ActivityHooks, DeadlineClock } from "./clock.ts";
export { MIN_TICK_GAP_MS, type NodeActivity } from "./clock.ts";
import { createExecutor, type StoreLike, type Timers } from "./executor.ts";
import { denoTransport, type Listener, type Transport } from "./transport.ts";
import { fingerprint } from "./identity.ts";
import { bootstrapEntry } from "../web/routes.ts";
import { Logger } from "./log.ts";

/** The store a node runs on: what the executor writes and reads, plus loading at start and closing. */
export interface NodeStore extends StoreLike {
  /** Everything the reducer's state starts from. */
  load(now?: number): Loaded;
  /** The public channel's private key, sealed, when this node holds it. */
  getChannelKey(): { creatorPub: string; sealed: SealedKey } | null;
  /** Close (the node closes its store when it stops). */
  close(): void;
}

/** What {@linkcode createNode} is made of; every part but the key has a default. */
export interface NodeParts extends ActivityHookParts {
  /** The node's identity key (RSA-4096; signs every frame it sends). */
  key: PrivateKey;
  /** Our server id (default: a random UUID; a store that already knows one should be given it). */
  serverId?: string;
  /**
   * What seals the public channel's key at rest: a passphrase (PBKDF2) or a random key `{ randomKey }` (HKDF)
   * (default: a random key, for a node in memory).
   */
  secret?: SealSecret;
  /** Where the node keeps users, pins, queues and the channel (default: SQLite in memory, `:memory:`). */
  store?: NodeStore;
  /** Named in the error when a store write fails (default "the store"). */
  storeName?: string;
  /** Listens, accepts and dials (default: the Deno transport, `Deno.serve` and `WebSocket`). */
  transport?: Transport;
  /** The clock, ms since the epoch (default `Date.now`). */
  clock?: () => number;
  /** Timers: dial delays, forced closes, the reducer's next deadline (default `setTimeout`). */
  timers?: Timers;
  /** Address to listen on (default 0.0.0.0, every interface). */
  host?: string;
  /** 0 picks a free port (default 8765). */
  port?: number;
  /** Host name others should use to reach us (status page, bootstrap entry). */
  publicHost?: string;
  /** PEM certificate (chain) and private key: serve `https://` and `wss://`. */
  tls?: { cert: string; key: string };
  /** Least severe level logged (default "info"). */
  logLevel?: LogLevel;
  /** Where log lines go (default: stderr). */
  logSink?: (line: string) => void;
  /** Overrides of {@linkcode DEFAULT_LIMITS}. */
  limits?: Partial<Limits>;
  /** Overrides of {@linkcode DEFAULT_FEDERATION}. */
  federation?: Partial<FederationConfig>;
  /** Accept RSA keys shorter than 4096 bits (PROFILE §13 lab mode). */
  labWeakKeys?: boolean;
  /** Accept replays of old frames (PROFILE §13 lab mode). */
  labReplay?: boolean;
  /** Reads a server's `software` (default: its `/.well-known/socp` over `fetch`). */
  readSoftware?: (url: string) => Promise<string>;
  /** Called once the node has stopped (or failed to start), after the store is closed. */
  onClosed?: () => void;
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
  /** Stop accepting, close every connection, close the store. */
  close(): Promise<void>;
  /**
   * Resolves when the server has stopped; rejects when it stopped by itself because a store write failed
   * (crash-only: restart it, and it resumes from the store).
   */
  finished: Promise<void>;
}

/** The shortest WebSocket ping timeout (seconds) the node gives an accepted connection. */
const PING_TIMEOUT_MIN_S = 5;

/**
 * Create a node from its parts and start it: it listens once this resolves. Rejects with `PortInUse` or a clear
 * error when it cannot start (the store is closed then).
 */
export async function createNode(parts: NodeParts): Promise<RunningNode> {
  const now = parts.clock ?? Date.now;
  const timers: Timers = parts.timers ?? {
    set: (fn, ms) => setTimeout(fn, ms),
    clear: (h) => clearTimeout(h as number),
  };
  const startedAt = now();
  const log = new Logger(parts.logLevel ?? "info", parts.logSink);
  const limits: Limits = { ...DEFAULT_LIMITS, ...parts.limits };
  const federation: FederationConfig = { ...DEFAULT_FEDERATION, ...parts.federation };
  const labModes = [...(parts.labWeakKeys ? ["weak-keys"] : []), ...(parts.labReplay ? ["replay"] : [])];
  const store: NodeStore = parts.store ?? Store.open(":memory:");
  const storeName = parts.storeName ?? "the store";
  const secret = parts.secret ?? { randomKey: encodeBase64Url(crypto.getRandomValues(new Uint8Array(32))) };
  const transport = parts.transport ?? denoTransport;
  const key = parts.key;
  const closeStore = () => {
    try {
      store.close();
    } finally {
      parts.onClosed?.();
    }
  };
  // An entry with our own key is this node itself (the same data directory, or a list that names every server):
  // dialing it would only find ourselves. Say so, and leave it out.
  const selfEntries = federation.bootstrap.filter((e) => sameKeyMaterial(e.pubkey, key.publicKey));
  if (selfEntries.length) {
    federation.bootstrap = federation.bootstrap.filter((e) => !selfEntries.includes(e));
    for (const e of selfEntries) {
      log.warn("bootstrap.self", {
        entry: `${e.host}:${e.port}`,
        note: federation.bootstrap.length
          ? "this entry is this node itself (same server key); skipped"
          : "the only bootstrap entry is this node itself (same server key, same data directory?): a second " +
            "server needs its own --data DIR; serving as introducer",
      });
    }
  }

  let state: State;
  let channelKey: PrivateKey | null = null;
  let fp: string;
  try {
    fp = await fingerprint(key.spki);
    // The public channel's private key, when this node holds it (sealed like the identity key).
    const sealedChannel = store.getChannelKey();
    if (sealedChannel) {
      try {
        channelKey = await PrivateKey.fromPkcs8(await openPrivateKey(sealedChannel.sealed, secret));
      } catch {
        throw new Error("cannot open the public channel key with this node's passphrase");
      }
    }
    state = initState(
      {
        serverId: parts.serverId ?? crypto.randomUUID(),
        serverPub: key.publicKey,
        serverPubPem: spkiToB64Pem(key.spki),
        limits,
        federation,
        labWeakKeys: !!parts.labWeakKeys,
        labReplay: !!parts.labReplay,
      },
      store.load(startedAt),
    );
  } catch (e) {
    closeStore();
    throw e;
  }

  let closed: Promise<void> | undefined;

  /** Why the node stopped by itself (a failed store write); `finished` rejects with it. */
  let fatal: Error | undefined;
  const metrics = new Counters();
  const ex = createExecutor({
    state,
    store,
    transport,
    key,
    secret,
    channelKey,
    limits,
    log,
    counters: metrics,
    now,
    onStep: (_ev, step) => {
      clock.arm(nextDeadline(step.state));
      hooks.step();
    },
    ...(parts.timers ? { timers: parts.timers } : {}),
    ...(parts.readSoftware ? { readSoftware: parts.readSoftware } : {}),
    onStoreFailed: (e, op = "write") => {
      // Crash-only: the node stops instead of running with memory ahead of disk (a failed write), or acting on a
      // partial view of it (a failed read).
      if (fatal) return;
      fatal = new Error(
        `cannot ${op} ${storeName} (${String(e).split("\n")[0]}): the node stopped so that it never ` +
          "runs ahead of what is on disk; fix the cause (disk full, permissions, another process holding the " +
          "database) and start it again: it resumes from the database",
      );
      void close();
    },
  });
  const dispatch = ex.dispatch;
  // The clock: one timer, armed for the reducer's next deadline (lib/core/timers.ts), through the injected timers.
  const clock = new DeadlineClock(timers, now, (at) => {
    dispatch({ kind: "tick", now: at });
    clock.arm(nextDeadline(ex.state())); // its step re-armed it already, unless the reducer threw
  });
  const hooks = new ActivityHooks(parts, timers, metrics, () => ex.effectsWaiting());

  // PROFILE §15 liveness: the WebSocket layer pings every connection at half this interval and closes it when
  // no pong comes back within it, so a peer that heartbeats only with pings is judged on its pongs. Users are
  // pinged too (the role is not known at the upgrade), so never less than PING_TIMEOUT_MIN_S: a client whose
  // event loop is busy for a second (decrypting a file) must not be cut by a short link timeout.
  const pingTimeoutS = Math.max(PING_TIMEOUT_MIN_S, Math.ceil(federation.linkTimeoutMs / 1000));

  const host = parts.host ?? "0.0.0.0";
  let listener: Listener;
  try {
    listener = transport.listen(
      { host, port: parts.port ?? 8765, ...(parts.tls ? { tls: parts.tls } : {}) },
      (req, addr, accept) => {
        if (!accept) return http(req);
        const pending = ex.channelPending();
        const upgrade = () => ex.upgrade(addr, accept, pingTimeoutS);
        return pending ? pending.then(upgrade) : upgrade();
      },
    );
  } catch (e) {
    ex.stop();
    closeStore();
    throw e;
  }
  const boundPort = listener.port;

  const publicHost = parts.publicHost ?? (host === "0.0.0.0" || host === "::" ? "localhost" : host);
  const wsUrl = `${parts.tls ? "wss" : "ws"}://${
    publicHost.includes(":") ? `[${publicHost}]` : publicHost
  }:${boundPort}`;
  const bootstrap = bootstrapEntry(publicHost, boundPort, key.publicKey, !!parts.tls);

  const http = httpHandler({
    state: ex.state,
    startedAt,
    fingerprint: fp,
    labModes,
    tls: !!parts.tls,
    wsUrl: () => wsUrl,
    bootstrap: () => bootstrap,
    counters: metrics,
    signatures: ex.signatures,
    connections: ex.connections,
    maxUnsent: ex.maxUnsent,
    maxInflight: ex.maxInflight,
    effectsWaiting: ex.effectsWaiting,
  });

  clock.arm(nextDeadline(ex.state()));
  let labTimer: unknown;
  const labWarn = () => {
    if (labModes.length === 0) return;
    log.warn("lab_mode.on", { modes: labModes.join(","), note: "deliberately weakened node" });
    labTimer = timers.set(labWarn, 60_000);
  };
  labWarn();

  dispatch({ kind: "started", now: now(), host: publicHost, port: boundPort });
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
      clock.stop(); // no timer is armed from here on

      hooks.stop();
      if (labTimer !== undefined) timers.clear(labTimer);
      ex.stop();
      await listener.close();
      try {
        closeStore();
      } catch (e) {
        log.error("store.close_failed", { error: String(e) });
      }
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
