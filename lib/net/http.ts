/**
 * The node's plain HTTP side: `/.well-known/socp` (who we are, which URL and scheme to dial), `/healthz`,
 * `/metrics` (Prometheus text) and, through {@linkcode webRoute}, the web app and its `/api/network` snapshot.
 * It reads the node through a small interface ({@linkcode HttpView}) and never changes it.
 *
 * @example
 * ```ts ignore
 * const handle = httpHandler(view);
 * const res = handle(new Request("http://127.0.0.1:8765/healthz"));
 * ```
 * @module
 */
import type { State } from "../core/types.ts";
import { SOFTWARE, VERSION } from "../protocol/version.ts";
import { type NetworkSnapshot, webRoute } from "../web/routes.ts";

import type { Counters } from "./counters.ts";
export { Counters } from "./counters.ts";

/** What the HTTP routes read from the node. */
export interface HttpView {
  /** The reducer's state now. */
  state(): State;
  /** When the node started (ms since the epoch). */
  startedAt: number;
  /** Our key's fingerprint. */
  fingerprint: string;
  /** Lab modes in force (shown everywhere a visitor looks). */
  labModes: string[];
  /** Whether we serve TLS. */
  tls: boolean;
  /** The URL others dial (`ws://` or `wss://`). */
  wsUrl(): string;
  /** The bootstrap entry others paste (`host:port#KEY`, or `wss://host:port#KEY` when we serve TLS). */
  bootstrap(): string;
  /** The shell's counters. */
  counters: Counters;
  /** Signatures made so far. */
  signatures(): number;
  /** Open connections. */
  connections(): number;
  /** The most bytes waiting for one connection now. */
  maxUnsent(): number;
  /** The most bytes received on one connection and not yet handled. */
  maxInflight(): number;
  /** Effects waiting for a turn of the event loop (a large fan-out in progress). */
  effectsWaiting(): number;
}

/** The handler for every non-WebSocket request. */
export function httpHandler(v: HttpView): (req: Request) => Response {
  const json = (x: unknown) =>
    new Response(JSON.stringify(x, null, 2) + "\n", { headers: { "content-type": "application/json" } });
  const uptime = () => Math.floor((Date.now() - v.startedAt) / 1000);
  return (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    // The URL is built from the Host header: one that is not a host name (or an address) and port is refused
    // here, before anything reads it, with 400 (RFC 9112 §3.2) and no log line.
    const host = req.headers.get("host");
    let path: string;
    try {
      if (host && !validHost(host)) throw new Error("bad host");
      path = new URL(req.url).pathname;
    } catch {
      return new Response("bad request: invalid Host header\n", { status: 400 });
    }
    const state = v.state();
    switch (path) {
      case "/.well-known/socp":
        return json({
          server_id: state.config.serverId,
          pubkey: state.config.serverPub,
          protocol: "SOCP/1.3",
          software: SOFTWARE,
          url: v.wsUrl(),
          bootstrap: v.bootstrap(),
          tls: v.tls,
          lab_modes: v.labModes,
        });
      case "/healthz":
        return json({
          status: "ok",
          server_id: state.config.serverId,
          uptime_s: uptime(),
          users_online: state.localUsers.size,
          servers_linked: state.links.size,
          lab_modes: v.labModes,
        });
      case "/metrics":
        return new Response(metricsText(v, state, uptime()), {
          headers: { "content-type": "text/plain; version=0.0.4" },
        });
      default:
        return webRoute(req, () => networkSnapshot(v, v.state())) ??
          new Response("not found\n", { status: 404 });
    }
  };
}

/**
 * A Host header we accept: a DNS name or IPv4 address (letters, digits, `.`, `-`, `_`) or a bracketed IPv6
 * address, then an optional port from 0 to 65535. At most 255 characters. (An empty Host is allowed by HTTP and
 * is not checked here.)
 */
export function validHost(host: string): boolean {
  if (host.length === 0 || host.length > 255) return false;
  const m = /^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/.exec(host);
  return !!m && (m[1] === undefined || Number(m[1]) <= 65535);
}

/** What the web app's network panel shows (lib/web/routes.ts builds the Host-relative JSON). */
function networkSnapshot(v: HttpView, state: State): NetworkSnapshot {
  const users = [...state.presence.values()].map((p) => {
    const meta = p.advert.payload.meta;
    const name = typeof meta?.display_name === "string" ? meta.display_name : p.userId;
    return { userId: p.userId, serverId: p.serverId, name };
  });
  const linked = [...state.links.keys()].map((id) => {
    const s = state.servers.get(id);
    return { serverId: id, host: s?.host ?? "", port: s?.port ?? 0 };
  });
  return {
    serverId: state.config.serverId,
    pubkey: state.config.serverPub,
    fingerprint: v.fingerprint,
    version: VERSION,
    labModes: v.labModes,
    maxFileBytes: state.config.limits.maxFileBytes,
    linked,
    users,
  };
}

function metricsText(v: HttpView, state: State, uptime: number): string {
  const mem = Deno.memoryUsage();
  const c = v.counters;
  const m: [string, string, number][] = [
    ["socp_users_online", "gauge", state.localUsers.size],
    ["socp_users_network", "gauge", state.presence.size],
    ["socp_servers_linked", "gauge", state.links.size],
    ["socp_connections", "gauge", v.connections()],
    ["socp_connections_total", "counter", c.connectionsTotal],
    ["socp_frames_in_total", "counter", c.framesIn],
    ["socp_frames_out_total", "counter", c.framesOut],
    ["socp_frame_bytes_total", "counter", c.frameBytes],
    ["socp_errors_sent_total", "counter", c.refused],
    ["socp_signatures_total", "counter", v.signatures()],
    ["socp_verifications_total", "counter", c.verifications],
    ["socp_frames_shed_total", "counter", c.shed],
    ["socp_connections_too_slow_total", "counter", c.tooSlow],
    ["socp_unsent_bytes_max", "gauge", v.maxUnsent()],
    ["socp_inflight_bytes_max", "gauge", v.maxInflight()],
    ["socp_effects_waiting", "gauge", v.effectsWaiting()],
    ["socp_seen_cache_entries", "gauge", state.seen.size],
    ["socp_uptime_seconds", "gauge", uptime],
    ["socp_memory_rss_bytes", "gauge", mem.rss],
    ["socp_memory_heap_total_bytes", "gauge", mem.heapTotal],
    ["socp_memory_heap_used_bytes", "gauge", mem.heapUsed],
    ["socp_memory_external_bytes", "gauge", mem.external],
  ];
  return m.map(([n, t, x]) => `# TYPE ${n} ${t}\n${n} ${x}\n`).join("");
}
