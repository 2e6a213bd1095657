/**
 * The web app's HTTP routes: the app itself (`/`, `/app.js`, `/app.css`, embedded at build time, see
 * scripts/build_web.ts) and `/api/network`, the JSON behind its network panel. Every response carries the
 * security headers (a Content-Security-Policy that allows only this origin, nosniff, no framing, no referrer).
 *
 * URLs and the bootstrap entry are built from the request's Host, so a remote visitor sees the name it used to
 * reach us (never `localhost`); the page itself picks `wss://` when it was loaded over https.
 *
 * @example
 * ```ts
 * const snapshot: NetworkSnapshot = {
 *   serverId: "s1",
 *   pubkey: "",
 *   fingerprint: "",
 *   version: "0.1.0",
 *   labModes: [],
 *   maxFileBytes: 16 * 1024 * 1024,
 *   linked: [],
 *   users: [],
 * };
 * const res = webRoute(new Request("http://chat.example:8765/"), () => snapshot);
 * res?.headers.get("content-security-policy"); // "default-src 'self'; ..."
 * ```
 * @module
 */
import { APP_CSS, APP_JS, ASSETS_TAG, INDEX_HTML, WORKER_JS } from "./assets.gen.ts";

/** What the node tells the network panel. */
export interface NetworkSnapshot {
  serverId: string;
  /** base64url DER SPKI of the server key. */
  pubkey: string;
  fingerprint: string;
  version: string;
  labModes: string[];
  maxFileBytes: number;
  linked: { serverId: string; host: string; port: number }[];
  users: { userId: string; serverId: string; name: string }[];
}

/** The JSON of `/api/network`. */
export interface NetworkJson {
  server_id: string;
  fingerprint: string;
  pubkey: string;
  version: string;
  lab_modes: string[];
  max_file_bytes: number;
  /**
   * The entry another node passes to --bootstrap, with the host this request used (see {@linkcode bootstrapEntry}):
   * `wss://host:port#PUBKEY` when this request came over TLS, `host:port#PUBKEY` otherwise.
   */
  bootstrap: string;
  /** The terminal chat command for this node, as it exists after the README's quick start. */
  chat_command: string;
  /** The WebSocket URL a terminal client would use (`ws://` or `wss://` as this request came). */
  ws_url: string;
  linked_servers: { server_id: string; host: string; port: number }[];
  users_online: { user_id: string; server_id: string; name: string }[];
}

/** Content-Security-Policy: scripts, styles and connections from this origin only; nothing framed or framing. */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "worker-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Headers on every web response. */
export function securityHeaders(contentType: string): Headers {
  return new Headers({
    "content-type": contentType,
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
  });
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** True when the request came over TLS (directly, or through a proxy that says so). */
function overTls(req: Request, url: URL): boolean {
  const fwd = req.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
  return url.protocol === "https:" || fwd === "https";
}

/**
 * The bootstrap entry others paste to join a node at `host:port` with key `pubkey`: `host:port#PUBKEY`, or, when
 * the node is reached over TLS, the URL form `wss://host:port#PUBKEY` (PROFILE §15: bootstrap entries may be
 * URLs), so that the joining node dials TLS. IPv6 hosts are bracketed.
 */
export function bootstrapEntry(host: string, port: number | string, pubkey: string, tls: boolean): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${tls ? "wss://" : ""}${h}:${port}#${pubkey}`;
}

/** Build the network JSON for this request (Host-relative). */
export function networkJson(req: Request, s: NetworkSnapshot): NetworkJson {
  const url = new URL(req.url);
  const tls = overTls(req, url);
  const port = url.port || (tls ? "443" : "80");
  return {
    server_id: s.serverId,
    fingerprint: s.fingerprint,
    pubkey: s.pubkey,
    version: s.version,
    lab_modes: s.labModes,
    max_file_bytes: s.maxFileBytes,
    bootstrap: bootstrapEntry(url.hostname, port, s.pubkey, tls),
    ws_url: `${tls ? "wss" : "ws"}://${url.host}`,
    chat_command: `deno task chat --server ${tls ? "wss" : "ws"}://${url.host} --name yourname`,
    linked_servers: s.linked.map((l) => ({ server_id: l.serverId, host: l.host, port: l.port })),
    users_online: s.users.map((u) => ({ user_id: u.userId, server_id: u.serverId, name: u.name })),
  };
}

/** Answer a web route, or `null` when `req` is not one of ours. `snapshot` is read only for `/api/network`. */
export function webRoute(req: Request, snapshot: () => NetworkSnapshot): Response | null {
  const url = new URL(req.url);
  const asset = (body: string, type: string) => {
    const h = securityHeaders(type);
    h.set("etag", `"${ASSETS_TAG}"`);
    h.set("cache-control", "no-cache");
    if (req.headers.get("if-none-match") === `"${ASSETS_TAG}"`) {
      return new Response(null, { status: 304, headers: h });
    }
    return new Response(req.method === "HEAD" ? null : body, { headers: h });
  };
  switch (url.pathname) {
    case "/":
    case "/index.html": {
      // The page names the server and how to reach it from a terminal (also without JavaScript).
      const j = networkJson(req, snapshot());
      const html = INDEX_HTML.replaceAll("%SERVER_ID%", esc(j.server_id)).replaceAll(
        "%WS_URL%",
        esc(j.ws_url),
      );
      const h = securityHeaders("text/html; charset=utf-8");
      h.set("cache-control", "no-store");
      return new Response(req.method === "HEAD" ? null : html, { headers: h });
    }
    case "/app.js":
      return asset(APP_JS, "text/javascript; charset=utf-8");
    case "/decrypt-worker.js":
      return asset(WORKER_JS, "text/javascript; charset=utf-8");
    case "/app.css":
      return asset(APP_CSS, "text/css; charset=utf-8");
    case "/api/network": {
      const h = securityHeaders("application/json");
      h.set("cache-control", "no-store");
      return new Response(JSON.stringify(networkJson(req, snapshot()), null, 2) + "\n", { headers: h });
    }
    default:
      return null;
  }
}
