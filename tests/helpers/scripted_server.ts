/**
 * A scripted SOCP server for interop tests: it listens on loopback (WebSocket on one path only, like deployed
 * servers that serve `/chat`), signs what it sends with a fixture RSA key under any `from` it is told to use,
 * and lets the test decide, frame by frame, how it answers. It uses our canonical JSON and RSA code only to sign;
 * every other behaviour is the script's.
 */
import type { PrivateKey } from "../../lib/crypto/rsa.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { within } from "./until.ts";
import type { Frame } from "./ws_peer.ts";

const enc = new TextEncoder();

/** Sign `payload` the way PROFILE §3 says (PSS over the canonical payload). */
export function signPayload(key: PrivateKey, payload: unknown): Promise<string> {
  return key.sign(enc.encode(canonicalJson(payload)));
}

/**
 * A USER_ADVERTISE for `user` at `serverId` in the form of the spec (`user_id`, `server_id`, `meta`, `pubkey`),
 * sent as `from` (by default the server itself); `ts` and `sig` are filled by {@linkcode ScriptedConn.send}.
 */
export function userAdvert(
  user: { id: string; key: { publicKey: string } },
  name: string,
  serverId: string,
  from = serverId,
): Frame {
  return {
    type: "USER_ADVERTISE",
    from,
    to: "*",
    payload: {
      user_id: user.id,
      server_id: serverId,
      meta: { display_name: name },
      pubkey: user.key.publicKey,
    },
  };
}

/**
 * One WebSocket connection of the scripted server (inbound, or one it dialed). `await using` closes it and waits
 * (at most 5 s) for the close to complete.
 */
export class ScriptedConn {
  /** Every frame, both directions, with the time it passed (for frames-per-minute counts). */
  readonly log: { at: number; dir: "in" | "out"; frame: Frame }[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  onFrame?: (f: Frame, conn: ScriptedConn) => void;

  constructor(readonly ws: WebSocket, readonly key: PrivateKey) {
    const closed = Promise.withResolvers<{ code: number; reason: string }>();
    this.closed = closed.promise;
    ws.onclose = (e) => closed.resolve({ code: e.code, reason: e.reason });
    ws.onerror = () => {};
    ws.onmessage = (e) => {
      let f: Frame;
      try {
        f = JSON.parse(String(e.data));
      } catch {
        f = { type: "<unparsable>", raw: String(e.data).slice(0, 200) };
      }
      this.log.push({ at: Date.now(), dir: "in", frame: f });
      this.waiters = this.waiters.filter((w) => (w.pred(f) ? (w.resolve(f), false) : true));
      this.onFrame?.(f, this);
    };
  }

  /** Dial `url` as a scripted server signing with `key`; resolves once the socket is open (at most `ms`). */
  static async dial(url: string, key: PrivateKey, ms = 5000): Promise<ScriptedConn> {
    const ws = new WebSocket(url);
    const conn = new ScriptedConn(ws, key);
    const open = new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("close", () => reject(new Error(`cannot dial ${url}`)));
    });
    try {
      await within(open, `a connection to ${url}`, ms);
    } catch (e) {
      conn.close();
      throw e;
    }
    return conn;
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Frames received so far. */
  get received(): Frame[] {
    return this.log.filter((e) => e.dir === "in").map((e) => e.frame);
  }

  /** Send a frame as is (its `sig` as given). */
  sendRaw(frame: Frame): void {
    if (!this.open) return;
    this.log.push({ at: Date.now(), dir: "out", frame });
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Fill `ts` (now) and `sig` (signed with our key), then send. */
  async send(frame: Frame): Promise<Frame> {
    const f = { ts: Date.now(), ...frame };
    f.sig = await signPayload(this.key, f.payload);
    this.sendRaw(f);
    return f;
  }

  /** The first frame (received before or after now) matching `pred`. */
  waitFor(pred: (f: Frame) => boolean, what: string, timeoutMs = 10_000): Promise<Frame> {
    const hit = this.received.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(
          new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.received.map((f) => f.type))}`),
        );
      }, timeoutMs);
      const done = (f: Frame) => (clearTimeout(t), resolve(f));
      this.waiters.push({ pred, resolve: done });
    });
  }

  close(code = 1000, reason = ""): void {
    try {
      this.ws.close(code, reason);
    } catch { /* already closed */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    await within(this.closed, "a scripted connection to close", 5000);
  }
}

/** Options of {@linkcode ScriptedServer.start}. */
export interface ScriptedServerOptions {
  key: PrivateKey;
  /** The only path that upgrades to WebSocket (others get 404), e.g. "/chat". */
  wsPath?: string;
  /** The body of GET /.well-known/socp; absent: 404. */
  wellKnown?: Record<string, unknown>;
  /**
   * WebSocket-level keepalive: Deno pings every connection at half this many seconds and closes it when no pong
   * comes back. 0 turns pings off.
   */
  pingSeconds?: number;
  /** Called for every new inbound connection. */
  onConnection?: (conn: ScriptedConn) => void;
  /**
   * Called with every frame received on any connection, inbound or dialed with {@linkcode ScriptedServer.dial}
   * (before `onConnection`'s own `onFrame`, which it replaces when that sets one).
   */
  onFrame?: (f: Frame, conn: ScriptedConn, server: ScriptedServer) => void | Promise<void>;
}

/** A scripted server on 127.0.0.1; `await using` stops it (see {@linkcode ScriptedServer.close}). */
export class ScriptedServer {
  /** Inbound connections, in the order they came. */
  readonly conns: ScriptedConn[] = [];
  /** Connections this server dialed ({@linkcode ScriptedServer.dial}). */
  readonly dialed: ScriptedConn[] = [];
  /** Paths and counts of HTTP requests that were not WebSocket upgrades. */
  readonly httpRequests: string[] = [];
  private constructor(
    private readonly server: Deno.HttpServer<Deno.NetAddr>,
    private readonly ac: AbortController,
    private readonly opts: ScriptedServerOptions,
  ) {}

  /** Route a connection's frames to `opts.onFrame`. */
  private script(conn: ScriptedConn): ScriptedConn {
    const onFrame = this.opts.onFrame;
    if (onFrame) conn.onFrame = (f, c) => void onFrame(f, c, this);
    return conn;
  }

  /** Dial `url` as this server (its key, its `onFrame`); closed with the server. */
  async dial(url: string): Promise<ScriptedConn> {
    const conn = this.script(await ScriptedConn.dial(url, this.opts.key));
    this.dialed.push(conn);
    return conn;
  }

  get port(): number {
    return this.server.addr.port;
  }

  static start(opts: ScriptedServerOptions): ScriptedServer {
    const ac = new AbortController();
    const ref: { self?: ScriptedServer } = {};
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
      (req) => {
        const url = new URL(req.url);
        if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          ref.self?.httpRequests.push(url.pathname);
          if (url.pathname === "/.well-known/socp" && opts.wellKnown) return Response.json(opts.wellKnown);
          return new Response("not found\n", { status: 404 });
        }
        if (url.pathname !== (opts.wsPath ?? "/")) return new Response("not found\n", { status: 404 });
        const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: opts.pingSeconds ?? 0 });
        const conn = ref.self!.script(new ScriptedConn(socket, opts.key));
        ref.self!.conns.push(conn);
        socket.addEventListener("open", () => opts.onConnection?.(conn));
        return response;
      },
    );
    ref.self = new ScriptedServer(server, ac, opts);
    return ref.self;
  }

  /** Stop listening and close every connection (a dialed one with 1000: a client may not send 1001). */
  async close(): Promise<void> {
    for (const c of this.conns) c.close(1001, "scripted server stopping");
    for (const c of this.dialed) c.close(1000, "scripted server stopping");
    this.ac.abort();
    await this.server.finished;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
