/**
 * The shell: the only code that touches `Deno.serve`, WebSockets, timers and the clock. It turns socket events
 * into reducer events and carries out the reducer's effects.
 *
 * Per connection, frames are parsed and their signatures verified concurrently as they arrive, but they reach
 * the reducer strictly in arrival order (a promise chain). Outbound frames are signed concurrently and sent in
 * order per connection; identical payloads are signed once ({@linkcode Signer}).
 *
 * @example
 * ```ts
 * const node = await startNode({ host: "127.0.0.1", port: 0, dataDir: "./socp-data" });
 * console.log(node.port, node.serverId);
 * await node.close();
 * ```
 * @module
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { initState, reduce } from "../core/reduce.ts";
import {
  DEFAULT_LIMITS,
  type Effect,
  type Event,
  type Limits,
  type LogLevel,
  type State,
} from "../core/types.ts";
import { sha256Hex, verifyAny } from "../crypto/rsa.ts";
import { canonicalJson, signaturePreimages } from "../protocol/canonical_json.ts";
import { parseFrame, type ParseResult, serializeEnvelope } from "../protocol/envelope.ts";
import { Store } from "../store/sqlite.ts";
import { SOFTWARE, VERSION } from "../version.ts";
import { statusPage } from "../web/status_page.ts";
import { fingerprint, loadOrCreateIdentity } from "./identity.ts";
import { Logger } from "./log.ts";
import { Signer } from "./signer.ts";

/** Options for {@linkcode startNode}. */
export interface NodeOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  dataDir: string;
  /** Host name others should use to reach us (status page, bootstrap entry). */
  publicHost?: string;
  logLevel?: LogLevel;
  /** Where log lines go (default: stderr). */
  logSink?: (line: string) => void;
  limits?: Partial<Limits>;
  labWeakKeys?: boolean;
  labReplay?: boolean;
  /** Passphrase that seals the identity key (default: a random secret in <data>/node.secret). */
  nodePassphrase?: string;
}

/** A running node. */
export interface RunningNode {
  port: number;
  host: string;
  serverId: string;
  publicKey: string;
  /** Stop accepting, close every connection, close the database. */
  close(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/** Thrown when the port cannot be bound. */
export class PortInUse extends Error {}

interface Socket {
  ws: WebSocket;
  /** Reducer-order chain of inbound frames. */
  inbound: Promise<void>;
  /** Send-order chain of outbound frames. */
  outbound: Promise<void>;
  /** The key of the USER_HELLO most recently seen on this socket (verifies frames racing the hello). */
  helloKey?: string;
  closing: boolean;
}

class Metrics {
  framesIn = 0;
  framesOut = 0;
  refused = 0;
  verifications = 0;
  connectionsTotal = 0;
}

/** Start a node. Rejects with {@linkcode PortInUse} or a clear error when it cannot start. */
export async function startNode(opts: NodeOptions): Promise<RunningNode> {
  const startedAt = Date.now();
  const log = new Logger(opts.logLevel ?? "info", opts.logSink);
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const labModes = [...(opts.labWeakKeys ? ["weak-keys"] : []), ...(opts.labReplay ? ["replay"] : [])];

  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const store = Store.open(join(opts.dataDir, "socp.db"));
  let identity;
  try {
    identity = await loadOrCreateIdentity(store, opts.dataDir, {
      passphrase: opts.nodePassphrase,
      keyBits: 4096,
      now: startedAt,
    });
  } catch (e) {
    store.close();
    throw e;
  }
  const fp = await fingerprint(identity.key.spki);
  if (identity.created) log.info("identity.created", { server_id: identity.serverId, fingerprint: fp });

  let state: State = initState({
    serverId: identity.serverId,
    serverPub: identity.key.publicKey,
    limits,
    labWeakKeys: !!opts.labWeakKeys,
    labReplay: !!opts.labReplay,
  }, store.listUsers());
  const signer = new Signer(identity.key);
  const metrics = new Metrics();
  const sockets = new Map<number, Socket>();
  let nextConn = 1;

  function dispatch(ev: Event): void {
    const step = reduce(state, ev);
    state = step.state;
    execute(step.effects, "conn" in ev ? ev.conn : undefined);
  }

  function execute(effects: Effect[], origin?: number): void {
    for (const fx of effects) {
      switch (fx.kind) {
        case "send": {
          const s = sockets.get(fx.conn);
          if (!s || s.closing) break;
          const frame = { ...fx.frame };
          const sig = fx.sign ? signer.sign(frame.payload) : Promise.resolve(frame.sig ?? "");
          if (frame.type === "ERROR") metrics.refused++;
          s.outbound = s.outbound.then(async () => {
            frame.sig = await sig;
            if (s.ws.readyState === WebSocket.OPEN) {
              s.ws.send(serializeEnvelope(frame));
              metrics.framesOut++;
            }
          }).catch((e) => log.error("send.failed", { conn: fx.conn, error: String(e) }));
          break;
        }
        case "close": {
          const s = sockets.get(fx.conn);
          if (!s || s.closing) break;
          s.closing = true;
          log.debug("conn.closing", { conn: fx.conn, code: fx.code, reason: fx.reason });
          s.outbound = s.outbound.then(() => {
            try {
              s.ws.close(fx.code, fx.reason.slice(0, 120));
            } catch {
              /* already closed */
            }
          });
          break;
        }
        case "persist":
          try {
            if (fx.op.op === "upsertUser") store.upsertUser(fx.op.user, Date.now());
          } catch (e) {
            // Nothing after a failed write may claim it succeeded: drop the rest of this batch.
            log.error("store.write_failed", { error: String(e) });
            if (origin !== undefined) {
              execute([{ kind: "close", conn: origin, code: 1011, reason: "server storage error" }]);
            }
            return;
          }
          break;
        case "log":
          log.log(fx.level, fx.event, fx.fields);
          break;
      }
    }
  }

  function verificationKey(conn: number, s: Socket, parsed: ParseResult): string | undefined {
    if (!parsed.ok) return undefined;
    const env = parsed.envelope;
    if (env.type === "USER_HELLO") {
      s.helloKey = env.payload.pubkey;
      return s.helloKey;
    }
    const userId = state.conns.get(conn)?.userId;
    return (userId ? state.users.get(userId)?.pubkey : undefined) ?? s.helloKey;
  }

  function onMessage(conn: number, s: Socket, data: unknown): void {
    if (s.closing) return;
    const now = Date.now();
    if (typeof data !== "string") {
      const parsed: ParseResult = {
        ok: false,
        error: {
          code: "UNKNOWN_TYPE",
          detail: "binary frames are not supported: send one JSON object as text",
        },
      };
      s.inbound = s.inbound.then(() =>
        dispatch({ kind: "frame", conn, now, parsed, digest: "", sig: "absent" })
      );
      return;
    }
    const bytes = data.length * 3 > limits.maxFrameBytes
      ? new TextEncoder().encode(data).length
      : data.length;
    if (bytes > limits.maxFrameBytes) {
      s.inbound = s.inbound.then(() => dispatch({ kind: "oversize", conn, now, bytes }));
      return;
    }
    metrics.framesIn++;
    const parsed = parseFrame(data);
    const digest = parsed.ok ? sha256Hex(canonicalJson(parsed.envelope.payload)) : "";
    const sigText = parsed.ok ? parsed.envelope.sig : undefined;
    const key = verificationKey(conn, s, parsed);
    let check: Promise<{ sig: "valid" | "invalid" | "absent"; sigKey?: string }>;
    if (!sigText || !parsed.ok) check = Promise.resolve({ sig: "absent" });
    else if (!key) check = Promise.resolve({ sig: "invalid" });
    else {
      metrics.verifications++;
      check = verifyAny(key, signaturePreimages(parsed.envelope.payload), sigText)
        .then((i) => (i >= 0 ? { sig: "valid", sigKey: key } : { sig: "invalid" }));
    }
    s.inbound = s.inbound.then(async () => {
      const r = await check;
      if (!s.closing) dispatch({ kind: "frame", conn, now: Date.now(), parsed, digest, ...r });
    }).catch((e) => log.error("frame.failed", { conn, error: String(e) }));
  }

  function upgrade(req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>): Response {
    const addr = info.remoteAddr.hostname; // must be read before the upgrade
    const { socket: ws, response } = Deno.upgradeWebSocket(req);
    const conn = nextConn++;
    const s: Socket = { ws, inbound: Promise.resolve(), outbound: Promise.resolve(), closing: false };
    sockets.set(conn, s);
    metrics.connectionsTotal++;
    ws.onopen = () => {
      log.debug("conn.opened", { conn, addr });
      dispatch({ kind: "connected", conn, addr, now: Date.now() });
    };
    ws.onmessage = (e) => onMessage(conn, s, e.data);
    ws.onerror = () => {};
    ws.onclose = () => {
      s.closing = true;
      s.inbound = s.inbound.then(() => {
        sockets.delete(conn);
        dispatch({ kind: "closed", conn, now: Date.now() });
        log.debug("conn.closed", { conn });
      });
    };
    return response;
  }

  const ac = new AbortController();
  let boundPort = 0;
  const host = opts.host ?? "0.0.0.0";
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: host,
      port: opts.port ?? 8765,
      signal: ac.signal,
      onListen: (a) => {
        boundPort = a.port;
      },
    }, (req, info) => {
      if (req.headers.get("upgrade")?.toLowerCase() === "websocket") return upgrade(req, info);
      return http(req);
    });
  } catch (e) {
    store.close();
    if (e instanceof Deno.errors.AddrInUse) {
      throw new PortInUse(`port ${opts.port} on ${host} is in use: pass --port with another port`);
    }
    throw e;
  }
  boundPort = server.addr.port;

  const publicHost = opts.publicHost ?? (host === "0.0.0.0" || host === "::" ? "localhost" : host);
  const wsUrl = `ws://${publicHost.includes(":") ? `[${publicHost}]` : publicHost}:${boundPort}`;

  function http(req: Request): Response {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const json = (v: unknown) =>
      new Response(JSON.stringify(v, null, 2) + "\n", { headers: { "content-type": "application/json" } });
    switch (url.pathname) {
      case "/.well-known/socp":
        return json({
          server_id: state.config.serverId,
          pubkey: state.config.serverPub,
          protocol: "SOCP/1.3",
          software: SOFTWARE,
          lab_modes: labModes,
        });
      case "/healthz":
        return json({
          status: "ok",
          server_id: state.config.serverId,
          uptime_s: Math.floor((Date.now() - startedAt) / 1000),
          users_online: state.localUsers.size,
          servers_linked: 0,
          lab_modes: labModes,
        });
      case "/metrics":
        return new Response(metricsText(), { headers: { "content-type": "text/plain; version=0.0.4" } });
      case "/":
      case "/index.html":
        return new Response(
          statusPage({
            serverId: state.config.serverId,
            fingerprint: fp,
            usersOnline: state.localUsers.size,
            wsUrl,
            version: VERSION,
            labModes,
          }),
          { headers: { "content-type": "text/html; charset=utf-8", "x-content-type-options": "nosniff" } },
        );
      default:
        return new Response("not found\n", { status: 404 });
    }
  }

  function metricsText(): string {
    const m: [string, string, number][] = [
      ["socp_users_online", "gauge", state.localUsers.size],
      ["socp_connections", "gauge", sockets.size],
      ["socp_connections_total", "counter", metrics.connectionsTotal],
      ["socp_frames_in_total", "counter", metrics.framesIn],
      ["socp_frames_out_total", "counter", metrics.framesOut],
      ["socp_errors_sent_total", "counter", metrics.refused],
      ["socp_signatures_total", "counter", signer.signatures],
      ["socp_verifications_total", "counter", metrics.verifications],
      ["socp_seen_cache_entries", "gauge", state.seen.size],
      ["socp_uptime_seconds", "gauge", Math.floor((Date.now() - startedAt) / 1000)],
    ];
    return m.map(([n, t, v]) => `# TYPE ${n} ${t}\n${n} ${v}\n`).join("");
  }

  const tickMs = Math.max(50, Math.min(1000, Math.floor(limits.firstFrameMs / 4)));
  const ticker = setInterval(() => dispatch({ kind: "tick", now: Date.now() }), tickMs);
  const labWarn = () => {
    if (labModes.length) {
      log.warn("lab_mode.on", { modes: labModes.join(","), note: "deliberately weakened node" });
    }
  };
  labWarn();
  const labTimer = labModes.length ? setInterval(labWarn, 60_000) : undefined;

  log.info("node.listening", {
    host,
    port: boundPort,
    server_id: state.config.serverId,
    fingerprint: fp,
    url: wsUrl,
    users_known: state.users.size,
  });

  let closed: Promise<void> | undefined;
  return {
    port: boundPort,
    host,
    serverId: state.config.serverId,
    publicKey: state.config.serverPub,
    finished: server.finished,
    close() {
      closed ??= (async () => {
        clearInterval(ticker);
        if (labTimer) clearInterval(labTimer);
        for (const s of sockets.values()) {
          try {
            s.ws.close(1001, "server shutting down");
          } catch { /* ignore */ }
        }
        ac.abort();
        await server.finished;
        store.close();
        log.info("node.stopped", { server_id: state.config.serverId });
      })();
      return closed;
    },
  };
}
