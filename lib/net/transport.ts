/**
 * The transport adapter: the only file that names `Deno.serve`, `Deno.upgradeWebSocket` or `new WebSocket`.
 * It listens (plain or TLS), accepts WebSocket upgrades with the peer's address, and dials with a give-up time;
 * every connection, accepted or dialed, is a {@linkcode Socket}. Another transport implements
 * {@linkcode Transport}.
 *
 * @example
 * ```ts ignore
 * const l = denoTransport.listen({ host: "127.0.0.1", port: 0 }, (req, addr, accept) =>
 *   accept ? accept(30, (s) => s.onMessage = (d) => s.send(String(d))).response : new Response("hi"));
 * await l.close();
 * ```
 * @module
 */
import type { Timers } from "./ports.ts";

/** One connection, accepted or dialed. */
export interface Socket {
  /** Send one text frame (ignored once the socket is not open). */
  send(text: string): void;
  /** Close (never throws). */
  close(code?: number, reason?: string): void;
  /** Bytes handed to the socket and not yet sent. */
  readonly bufferedAmount: number;
  /** The socket is open (it can send). */
  readonly open: boolean;
  /** Called with each frame received (a string for text frames). */
  onMessage: (data: unknown) => void;
  /** Called once when the socket is closed, by either side. */
  onClose: () => void;
}

/** Accept a WebSocket upgrade: `onOpen` runs with the socket once it is open. */
export type Accept = (
  idleTimeoutS: number,
  onOpen: (socket: Socket) => void,
) => { socket: Socket; response: Response };

/** Answer one request; `accept` is given when it asks for a WebSocket upgrade. */
export type Handler = (req: Request, addr: string, accept?: Accept) => Response | Promise<Response>;

/** Where and how to listen. */
export interface ListenOptions {
  /** Address to listen on. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** PEM certificate and key: serve TLS. */
  tls?: { cert: string; key: string };
}

/** A running listener. */
export interface Listener {
  /** The port bound. */
  port: number;
  /** Stop listening (open sockets are the caller's to close). */
  close(): Promise<void>;
  /** Resolves when the listener has stopped. */
  finished: Promise<void>;
}

/** What happens to a dial. */
export interface DialHandlers {
  /** The connection is open. */
  onOpen(socket: Socket): void;
  /** It could not be opened (including the give-up time passing). */
  onFail(reason: string): void;
}

/** Listen, accept and dial. */
export interface Transport {
  /** Listen; throws {@linkcode PortInUse} or a clear error when it cannot. */
  listen(opts: ListenOptions, handler: Handler): Listener;
  /** Dial `url` (`ws://` or `wss://`, with its path), giving up after `timeoutMs`. */
  dial(url: string, timeoutMs: number, on: DialHandlers): void;
}

/** Thrown when the port cannot be bound. */
export class PortInUse extends Error {}

const ignore = () => {};

/**
 * The close code a WebSocket *client* may send for `code` (PROFILE §15): only 1000 and 3000–4999 are allowed
 * there (a runtime throws on the others), so the reasons we send as 1001/1008/1009 on accepted sockets become
 * 4001/4008/4009 on sockets we dialed. No code at all is 1000.
 */
export function clientCloseCode(code?: number): number {
  if (code === undefined || code === 1000 || (code >= 3000 && code <= 4999)) return code ?? 1000;
  return code >= 1000 && code < 2000 ? 4000 + (code - 1000) : 1000;
}

/** `reason` cut to the 123 bytes of UTF-8 a close frame can carry (a runtime throws on more). */
export function closeReason(reason = ""): string {
  const enc = new TextEncoder();
  if (enc.encode(reason).length <= 123) return reason;
  let r = reason.slice(0, 123);
  while (enc.encode(r).length > 123) r = r.slice(0, -1);
  return r;
}

/** A WebSocket as a {@linkcode Socket}: one small object per connection, its methods shared. */
class WsSocket implements Socket {
  onMessage: (data: unknown) => void = ignore;
  onClose: () => void = ignore;
  /** Set once `onClose` ran (by the runtime's close event, or because `close()` threw). */
  private ended = false;
  /** `dialed`: a client socket, which may send only client close codes (PROFILE §15). */
  constructor(private readonly ws: WebSocket, private readonly dialed = false) {
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onerror = ignore;
    ws.onclose = () => this.end();
  }
  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.onClose();
  }
  send(text: string): void {
    if (!this.ended && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }
  close(code?: number, reason?: string): void {
    if (this.ended) return;
    try {
      this.ws.close(this.dialed ? clientCloseCode(code) : code, closeReason(reason));
    } catch {
      // The runtime refused to close (a code or reason it does not take, or a socket in an odd state): the
      // socket counts as closed, so the connection's closed path runs (PROFILE §15), and it is dropped.
      if (this.ws.readyState !== WebSocket.CLOSED) {
        try {
          this.ws.close();
        } catch { /* nothing more to try */ }
      }
      this.end();
    }
  }
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }
  get open(): boolean {
    return !this.ended && this.ws.readyState === WebSocket.OPEN;
  }
}

/**
 * Call `onOpen` once the socket opens. Made outside the request handler, and dropped once run, so that the
 * socket does not keep the upgrade request (its headers and signal) alive for as long as the connection lasts.
 */
function whenOpen(ws: WebSocket, socket: Socket, onOpen: (s: Socket) => void): void {
  ws.onopen = () => {
    ws.onopen = null;
    onOpen(socket);
  };
}

/** The Deno runtime's transport: `Deno.serve` and WebSockets, plain or TLS. */
export const denoTransport: Transport = {
  listen(opts, handler) {
    const ac = new AbortController();
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = Deno.serve({
        hostname: opts.host,
        port: opts.port,
        signal: ac.signal,
        onListen: () => {},
        ...(opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : {}),
      }, (req, info) => {
        const addr = info.remoteAddr.hostname; // must be read before an upgrade
        if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") return handler(req, addr);
        const accept: Accept = (idleTimeoutS, onOpen) => {
          const { socket: ws, response } = Deno.upgradeWebSocket(req, { idleTimeout: idleTimeoutS });
          const socket = new WsSocket(ws);
          whenOpen(ws, socket, onOpen);
          return { socket, response };
        };
        return handler(req, addr, accept);
      });
    } catch (e) {
      if (e instanceof Deno.errors.AddrInUse) {
        throw new PortInUse(`port ${opts.port} on ${opts.host} is in use: pass --port with another port`);
      }
      if (opts.tls) {
        throw new Error(
          `cannot serve TLS with this certificate and key: ${(e as Error).message.split("\n")[0]}`,
        );
      }
      throw e;
    }
    return {
      port: server.addr.port,
      finished: server.finished,
      close: () => {
        ac.abort();
        return server.finished;
      },
    };
  },

  dial(url, timeoutMs, on) {
    dialWebSocket(url, timeoutMs, on);
  },
};

/** Options of {@linkcode denoTransportWith}. */
export interface DialTrust {
  /** PEM certificates of CAs trusted for `wss://` dials, besides the system's (`--ca-cert`). */
  caCerts?: string[];
  /** The timers that give up a dial after its time (default `setTimeout`). */
  timers?: Timers;
}

/** The Deno transport, dialing `wss://` with extra trusted CAs; `close()` releases its HTTP client. */
export function denoTransportWith(
  trust: DialTrust,
): Transport & { close(): void; client?: Deno.HttpClient } {
  const { timers } = trust;
  if (!trust.caCerts?.length) {
    return {
      listen: denoTransport.listen,
      dial: (url, timeoutMs, on) => dialWebSocket(url, timeoutMs, on, undefined, timers),
      close: () => {},
    };
  }
  // Deno's WebSocket takes an HttpClient (its `client` option), whose caCerts are added to the trusted roots.
  const client = Deno.createHttpClient({ caCerts: trust.caCerts });
  return {
    listen: denoTransport.listen,
    dial: (url, timeoutMs, on) => dialWebSocket(url, timeoutMs, on, client, timers),
    client,
    close: () => {
      try {
        client.close();
      } catch { /* already closed */ }
    },
  };
}

/** The runtime's timers, for dials. */
const runtimeTimers: Timers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (h) => clearTimeout(h as number),
};

function dialWebSocket(
  url: string,
  timeoutMs: number,
  on: DialHandlers,
  client?: Deno.HttpClient,
  timers: Timers = runtimeTimers,
): void {
  let ws: WebSocket;
  try {
    ws = client ? new WebSocket(url, { client }) : new WebSocket(url);
  } catch (e) {
    on.onFail(dialFailure(url, String(e)));
    return;
  }
  let opened = false;
  let gaveUp = false;
  let error = "";
  // Give up after `timeoutMs`: close the socket still connecting; its close reports the failure.
  const giveUp = timers.set(() => {
    if (!opened) {
      gaveUp = true;
      try {
        ws.close();
      } catch { /* ignore */ }
    }
  }, timeoutMs);
  const socket = new WsSocket(ws, true);
  ws.onerror = (e) => {
    if (!opened) error = (e as ErrorEvent).message ?? "";
  };
  socket.onClose = () => {
    timers.clear(giveUp);
    if (!opened) on.onFail(dialFailure(url, error || (gaveUp ? `no answer within ${timeoutMs} ms` : "")));
  };
  ws.onopen = () => {
    opened = true;
    ws.onerror = ignore;
    timers.clear(giveUp);
    socket.onClose = () => {};
    on.onOpen(socket);
  };
}

/**
 * Why a dial failed, in words: the runtime's TLS errors (rustls: `UnknownIssuer`, `certificate not valid for name`,
 * `Expired`…) become what to do about them.
 */
export function dialFailure(url: string, error: string): string {
  const detail = error.replace(/^(NetworkError|Error):\s*/, "").replace(
    /^failed to connect to WebSocket:\s*/i,
    "",
  )
    .slice(0, 300);
  if (/UnknownIssuer|unknown issuer|self[- ]signed|UnknownCA/i.test(detail)) {
    return `cannot connect to ${url}: its TLS certificate is not signed by a CA this node trusts (${detail}); ` +
      "for a private CA start the node with --ca-cert FILE (or SOCP_CA_CERT, or DENO_CERT)";
  }
  if (/not valid for name|NotValidForName/i.test(detail)) {
    return `cannot connect to ${url}: its TLS certificate is for another name (${detail}); ` +
      "dial the host name the certificate was issued for";
  }
  if (/Expired|NotValidYet|not valid yet/i.test(detail)) {
    return `cannot connect to ${url}: its TLS certificate is expired or not yet valid (${detail})`;
  }
  if (/certificate|handshake|tls/i.test(detail)) return `cannot connect to ${url}: TLS failed (${detail})`;
  return detail ? `cannot connect to ${url}: ${detail}` : `cannot connect to ${url}`;
}

/**
 * Throw {@linkcode PortInUse} when `port` on `host` is taken now, so that a node can say so before it writes
 * anything (data directory, database, keys). Port 0 is always free; any other error is left for `listen` to report.
 */
export function checkPortFree(host: string, port: number): void {
  if (port === 0) return;
  try {
    Deno.listen({ hostname: host, port }).close();
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new PortInUse(`port ${port} on ${host} is in use: pass --port with another port`);
    }
  }
}
