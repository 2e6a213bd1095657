/**
 * The shell: the code that touches sockets (through transport.ts), timers and the clock. It turns socket events
 * into reducer events and carries out the reducer's effects; HTTP routes are in http.ts.
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
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type Effect,
  endpointUrl,
  type Event,
  type FederationConfig,
  type Limits,
  type LogLevel,
  type Seal,
  type State,
  type Step,
} from "../core/types.ts";
import { sameKeyMaterial, spkiToB64Pem } from "../protocol/keys.ts";
import { encryptTo, generateKeyPair, PrivateKey } from "../crypto/rsa.ts";
import { sha256Sync } from "./digest.ts";
import { msgRef } from "../protocol/msg_ref.ts";
import { openPrivateKey, sealPrivateKey } from "../crypto/keyfile.ts";
import { keySharePreimage } from "../protocol/preimages.ts";
import { canonicalJson } from "../protocol/canonical_json.ts";
import { type Envelope, serializeEnvelope } from "../protocol/envelope.ts";
import { Store } from "../store/sqlite.ts";
import { Counters, httpHandler } from "./http.ts";
import { readSoftware } from "./probe.ts";
import { type InboundConn, type InboundContext, onFrame } from "./inbound.ts";
import {
  type Accept,
  denoTransport,
  type Listener,
  PortInUse,
  type Socket,
  type Transport,
} from "./transport.ts";
import { fingerprint, type Identity, loadOrCreateIdentity, nodeSecret } from "./identity.ts";
import { Logger } from "./log.ts";
import { Signer } from "./signer.ts";
import { approxBytes, highWater } from "./outbound.ts";

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

export { PortInUse };

/** The shortest WebSocket ping timeout (seconds) the node gives an accepted connection. */
const PING_TIMEOUT_MIN_S = 5;

interface Conn extends InboundConn {
  sock: Socket;
  /** The peer's address (host name for connections we dialed). */
  addr: string;
  /** Reducer-order chain of inbound frames. */
  inbound: Promise<void>;
  /** Send-order chain of outbound frames. */
  outbound: Promise<void>;
  closing: boolean;
  /** Frames received but not yet reduced (parsing and verification under way). */
  inflight: number;
  /** Estimated bytes of signed frames in the outbound chain, not yet handed to the WebSocket. */
  ready: number;
  /** The outbound queue waits for a peer that does not read (see `drain`). */
  stalled: boolean;
  /** The reducer has been told this connection closed. */
  gone: boolean;
  /** Cut as too slow, and the runtime has not closed it yet. */
  lingering: boolean;
}

/** Start a node. Rejects with {@linkcode PortInUse} or a clear error when it cannot start. */
export async function startNode(opts: NodeOptions): Promise<RunningNode> {
  const startedAt = Date.now();
  const log = new Logger(opts.logLevel ?? "info", opts.logSink);
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const labModes = [...(opts.labWeakKeys ? ["weak-keys"] : []), ...(opts.labReplay ? ["replay"] : [])];

  mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  const dbPath = join(opts.dataDir, "socp.db");
  const store = Store.open(dbPath);
  let identity: Identity;
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

  const federation: FederationConfig = { ...DEFAULT_FEDERATION, ...opts.federation };
  const secret = await nodeSecret(opts.dataDir, opts.nodePassphrase);
  // The public channel's private key, when this node holds it (sealed like the identity key).
  let channelKey: PrivateKey | null = null;
  const sealedChannel = store.getChannelKey();
  if (sealedChannel) {
    try {
      channelKey = await PrivateKey.fromPkcs8(await openPrivateKey(sealedChannel.sealed, secret));
    } catch {
      store.close();
      throw new Error("cannot open the public channel key with this node's passphrase");
    }
  }
  const loaded = store.load();
  let state: State = initState(
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
  const transport: Transport = denoTransport;
  const dialTimers = new Set<ReturnType<typeof setTimeout>>();
  let stopping = false;
  let closed: Promise<void> | undefined;
  /** Why the node stopped by itself (a failed store write); `finished` rejects with it. */
  let fatal: Error | undefined;
  const signer = new Signer(identity.key);
  const metrics = new Counters();
  const sockets = new Map<number, Conn>();
  /** Connections cut as too slow that the runtime still holds (their peer neither reads nor closes), by address. */
  const lingering = new Map<string, number>();
  const high = highWater(limits.maxUnsentBytes);
  const inboundCtx: InboundContext = { limits, counters: metrics, state: () => state, dispatch, log };
  let nextConn = 1;

  function dispatch(ev: Event): void {
    let step: Step;
    try {
      step = reduce(state, ev);
    } catch (e) {
      // Last line of defence: a bug in handling one event is logged and, for a frame, refuses that frame (with a
      // strike, like any invalid frame); it never ends the process or leaves the connection waiting.
      const type = ev.kind === "frame" && ev.parsed.ok ? ev.parsed.envelope.type : undefined;
      log.error("event.failed", {
        kind: ev.kind,
        type: type ?? "",
        conn: "conn" in ev ? ev.conn : 0,
        error: String(e),
      });
      if (ev.kind === "frame" && ev.parsed.ok) {
        const detail = `the node failed while handling this ${type} frame; it was refused`;
        dispatch({ ...ev, parsed: { ok: false, error: { code: "UNKNOWN_TYPE", detail, type } } });
      }
      return;
    }
    state = step.state;
    try {
      execute(step.effects);
    } catch (e) {
      log.error("effects.failed", { kind: ev.kind, error: String(e) });
    }
  }

  /**
   * Write to the store. A failed write is fatal (crash-only): the node logs it and stops, and is restarted from
   * the database instead of running with memory ahead of disk. False when the write failed.
   */
  function write(f: () => void): boolean {
    try {
      f();
      return true;
    } catch (e) {
      log.error("store.write_failed", { error: String(e) });
      if (!fatal) {
        fatal = new Error(
          `cannot write the database ${dbPath} (${
            String(e).split("\n")[0]
          }): the node stopped so that it never ` +
            "runs ahead of what is on disk; fix the cause (disk full, permissions, another process holding the " +
            "database) and start it again: it resumes from the database",
        );
        void close();
      }
      return false;
    }
  }

  function execute(effects: Effect[]): void {
    for (const fx of effects) {
      switch (fx.kind) {
        case "send": {
          const s = sockets.get(fx.conn);
          if (!s || s.closing) break;
          // A peer that does not read makes frames wait; past the bound it is cut (PROFILE §11, unsent bytes).
          const bytes = approxBytes(fx.frame);
          const unsent = s.ready + s.sock.bufferedAmount + bytes;
          if (unsent > limits.maxUnsentBytes && s.stalled) {
            tooSlow(fx.conn, s, unsent);
            break;
          }
          const seal = fx.seal;
          let text: Promise<string>;
          if (seal) {
            const frame = { ...fx.frame };
            text = applySeal(frame, seal).then((ok) =>
              ok
                ? signer.sign(frame.payload).then((sig) => serializeEnvelope({ ...frame, sig }))
                : Promise.reject(new Error("no channel key"))
            );
          } else {
            // Signed and serialized once per frame object (an advert kept while its user is online, a broadcast).
            text = signer.text(fx.frame, fx.sign);
          }
          if (fx.frame.type === "ERROR") metrics.refused++;
          // Frames count against the peer once signed: until then they wait for us, not for the peer.
          let ready = false;
          text.then(() => {
            ready = true;
            s.ready += bytes;
          }, () => {});
          s.outbound = s.outbound.then(async () => {
            try {
              const t = await text;
              await drain(fx.conn, s);
              if (s.sock.open) {
                s.sock.send(t);
                metrics.framesOut++;
              }
            } finally {
              if (ready) s.ready -= bytes;
            }
          }).catch((e) => log.error("send.failed", { conn: fx.conn, error: String(e) }));
          break;
        }
        case "close": {
          const s = sockets.get(fx.conn);
          if (!s || s.closing) break;
          s.closing = true;
          s.cut = true;
          log.debug("conn.closing", { conn: fx.conn, code: fx.code, reason: fx.reason });
          const closeNow = () => s.sock.close(fx.code, fx.reason.slice(0, 120));
          // Frames before the close go first, but a peer that does not read cannot hold the close back.
          const hard = setTimeout(closeNow, 5_000);
          s.outbound = s.outbound.then(() => {
            clearTimeout(hard);
            closeNow();
          });
          break;
        }
        case "dial":
          dial(fx.token, endpointUrl(fx), fx.afterMs, fx.timeoutMs);
          break;
        case "deliverQueued": {
          const rows = store.queuedFor(fx.userId, fx.notBefore);
          sendStored(fx.conn, rows, (ids) => write(() => store.dequeue(ids)), `queued for ${fx.userId}`);
          break;
        }
        case "flushOutbox": {
          const rows = store.outboxFor(fx.serverId, fx.notBefore);
          if (fx.confirm) {
            // Rows stay until the server ACKs each frame (outboxAcked).
            sendStored(fx.conn, rows, () => {}, `kept for ${fx.serverId}`);
          } else {
            // A server that does not speak the ACK extension (PROFILE §15): without `ack`, and handing the frames
            // to the live link is delivery.
            const plain = rows.map((r) => {
              const f = r.frame as Envelope;
              const { ack: _ack, ...payload } = f.payload as Record<string, unknown>;
              return { id: r.id, frame: { ...f, payload } };
            });
            sendStored(
              fx.conn,
              plain,
              (ids) => write(() => store.deleteOutbox(ids)),
              `handed to ${fx.serverId}`,
            );
          }
          break;
        }
        case "outboxHanded":
          write(() => store.clearOutbox(fx.serverId));
          break;
        case "probe":
          probe(fx.serverId, fx.url);
          break;
        case "outboxAcked":
          write(() => store.ackOutbox(fx.serverId, fx.msgRef));
          break;
        case "createChannel":
          createChannel();
          break;
        case "adoptChannel":
          adoptChannel(fx.version, fx.creatorPub, fx.wrappedKey);
          break;
        case "persist":
          if (
            !write(() => {
              const op = fx.op;
              if (op.op === "upsertUser") store.upsertUser(op.user, Date.now());
              else if (op.op === "pinServer") store.pinServer(op.server, Date.now());
              else if (op.op === "setServerId") store.setServerId(op.serverId);
              else if (op.op === "setHome") store.setHome(op.userId, op.serverId);
              else if (op.op === "enqueue") store.enqueue(op.userId, op.frame, op.now);
              else if (op.op === "outbox") {
                const ref = msgRef(sha256Sync(canonicalJson(op.frame.payload)));
                store.addOutbox(op.serverId, ref, op.frame, op.now);
              } else if (op.op === "channel") store.setChannel(op.version, op.creatorPub, Date.now());
              else if (op.op === "acceptRef") store.acceptRef(op.ref, op.now);
              else store.addMember(op.memberId, op.wrappedKey, op.now);
            })
          ) {
            return; // nothing after a failed write may claim it succeeded: the node is stopping
          }
          break;
        case "log":
          log.log(fx.level, fx.event, fx.fields);
          break;
      }
    }
  }

  /**
   * Read `software` from a server's /.well-known/socp (PROFILE §15: who speaks the outbox ACK extension). Bounded
   * in time and size; any failure answers "" (it says nothing, so it gets no extension).
   */
  function probe(serverId: string, url: string): void {
    const answer = (software: string, tls: boolean) => {
      if (stopping) return;
      try {
        dispatch({ kind: "software", now: Date.now(), serverId, software, ...(tls ? { tls } : {}) });
      } catch (e) {
        log.error("probe.failed", { server: serverId, error: String(e) });
      }
    };
    // A server that joined us says nothing of TLS: when plain http cannot connect, try https (and the reducer
    // then redials it with wss://).
    readSoftware(url).catch(() =>
      url.startsWith("http://")
        ? readSoftware(url.replace(/^http:/, "https:")).then((sw) => ({ sw, tls: true }))
        : Promise.reject(new Error("no answer"))
    ).then(
      (r) => typeof r === "string" ? answer(r, false) : answer(r.sw, r.tls),
      () => answer("", false),
    );
  }

  /** Fill in a frame's channel-key crypto (PROFILE §8); false when this node holds no channel key. */
  async function applySeal(frame: Envelope, seal: Seal): Promise<boolean> {
    if (!channelKey) return false;
    const wrapped = await encryptTo(seal.forKey, await channelKey.exportPkcs8());
    const p = structuredClone(frame.payload) as Record<string, unknown>;
    if (seal.kind === "welcome") (p.public_channel as Record<string, unknown>).wrapped_key = wrapped;
    else if (seal.kind === "updated") (p.wraps as Record<string, unknown>[])[0].wrapped_key = wrapped;
    else {
      (p.shares as Record<string, unknown>[])[0].wrapped_public_channel_key = wrapped;
      p.content_sig = await channelKey.sign(keySharePreimage(p.shares, p.creator_pub as string));
    }
    frame.payload = p as typeof frame.payload;
    return true;
  }

  /** Send stored frames (queue or outbox) in order, signed now, then delete them once they have left. */
  function sendStored(
    conn: number,
    rows: { id: number; frame: unknown }[],
    remove: (ids: number[]) => void,
    what: string,
  ) {
    const s = sockets.get(conn);
    if (!s || rows.length === 0) return;
    const frames = rows.map((r) => ({ ...(r.frame as Envelope), from: state.config.serverId }));
    const sigs = frames.map((f) => signer.sign(f.payload));
    s.outbound = s.outbound.then(async () => {
      for (let i = 0; i < frames.length; i++) {
        frames[i].sig = await sigs[i];
        await drain(conn, s); // paced: a long queue never piles up in the runtime's buffer
        if (!s.sock.open) return;
        s.sock.send(serializeEnvelope(frames[i]));
        metrics.framesOut++;
      }
      remove(rows.map((r) => r.id));
      log.info("stored.delivered", { conn, frames: rows.length, what });
    }).catch((e) => log.error("stored.failed", { conn, error: String(e) }));
  }

  /** Seal and store a channel key (the `channel_key` row and the `groups` row), and return it. */
  async function storeChannelKey(key: PrivateKey, version: number): Promise<PrivateKey> {
    store.setChannelKey(key.publicKey, await sealPrivateKey(await key.exportPkcs8(), secret));
    store.setChannel(version, key.publicKey, Date.now());
    return key;
  }

  async function keepChannelKey(key: PrivateKey, version: number): Promise<void> {
    channelKey = await storeChannelKey(key, version);
    dispatch({ kind: "channelReady", now: Date.now(), version, creatorPub: key.publicKey });
  }

  // The first server of a network creates the channel key when it starts (the reducer asks, at `started`):
  // until it exists, new connections wait, so the key is there before anyone can join (PROFILE §8).
  let starting = true;
  let creatingChannel: Promise<void> | undefined;

  function createChannel(): void {
    const creating = generateKeyPair(4096).then((key) => keepChannelKey(key, 1)).then(
      () => log.info("channel.created", { version: 1 }),
      (e) => dispatch({ kind: "channelFailed", now: Date.now(), reason: String(e) }),
    );
    if (starting) creatingChannel = creating.finally(() => creatingChannel = undefined);
  }

  function adoptChannel(version: number, creatorPub: string, wrappedKey: string): void {
    identity.key.decrypt(wrappedKey)
      .then((pkcs8) => PrivateKey.fromPkcs8(pkcs8))
      .then((key) => {
        if (!sameKeyMaterial(key.publicKey, creatorPub)) {
          throw new Error("the wrapped channel key does not match creator_pub");
        }
        return keepChannelKey(key, version);
      })
      .then(
        () => log.info("channel.adopted", { version }),
        (e) => dispatch({ kind: "channelFailed", now: Date.now(), reason: String(e) }),
      );
  }

  /**
   * Wait until the socket has room (its buffer at or under the high-water mark; see outbound.ts), polling every
   * 10 ms. The peer is *stalled* when its buffer has not shrunk over five polls and a quarter second: a peer that
   * reads empties it as soon as this node yields, however busy the node was. A stalled peer with more than
   * `maxUnsentBytes` signed and waiting for it is cut (frames still being signed wait for us, not for the peer).
   */
  async function drain(conn: number, s: Conn): Promise<void> {
    if (s.sock.bufferedAmount <= high) return;
    const since = Date.now();
    let last = Infinity;
    let still = 0;
    try {
      while (s.sock.open) {
        const b = s.sock.bufferedAmount;
        if (b <= high) return;
        still = b < last ? 0 : still + 1;
        last = b;
        s.stalled = still >= 5 && Date.now() - since >= 250;
        if (s.stalled && s.ready + b > limits.maxUnsentBytes) return tooSlow(conn, s, s.ready + b);
        await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      s.stalled = false;
    }
  }

  /** Tell the reducer (once) that a connection is gone. */
  function gone(conn: number, s: Conn): void {
    if (s.gone) return;
    s.gone = true;
    sockets.delete(conn);
    dispatch({ kind: "closed", conn, now: Date.now() });
    log.debug("conn.closed", { conn });
  }

  /**
   * Cut a connection whose peer does not read: more than `maxUnsentBytes` wait for it. The reducer hears now (the
   * user goes offline, so what follows for them is queued, and they may log in again); the runtime may hold the
   * socket until the peer reads or goes away, so such sockets still count against their address.
   */
  function tooSlow(conn: number, s: Conn, unsent: number): void {
    if (s.closing) return;
    s.closing = true;
    s.cut = true;
    metrics.tooSlow++;
    log.warn("conn.too_slow", { conn, addr: s.addr, unsent_bytes: unsent, limit: limits.maxUnsentBytes });
    lingering.set(s.addr, (lingering.get(s.addr) ?? 0) + 1);
    s.lingering = true;
    s.sock.close(1008, "too slow");
    s.inbound = s.inbound.then(() => gone(conn, s));
  }

  function attach(conn: number, sock: Socket, addr: string): Conn {
    const s: Conn = {
      sock,
      addr,
      inbound: Promise.resolve(),
      outbound: Promise.resolve(),
      closing: false,
      cut: false,
      inflight: 0,
      ready: 0,
      stalled: false,
      gone: false,
      lingering: false,
    };
    sockets.set(conn, s);
    sock.onMessage = (data) => onFrame(inboundCtx, conn, s, data);
    sock.onClose = () => {
      s.closing = true;
      if (s.lingering) {
        s.lingering = false;
        const n = (lingering.get(addr) ?? 1) - 1;
        if (n <= 0) lingering.delete(addr);
        else lingering.set(addr, n);
      }
      s.inbound = s.inbound.then(() => gone(conn, s));
    };
    return s;
  }

  function dial(token: number, url: string, afterMs: number, timeoutMs: number): void {
    const t = setTimeout(() => {
      dialTimers.delete(t);
      if (stopping) return;
      transport.dial(url, timeoutMs, {
        onFail: (reason) => dispatch({ kind: "dialFailed", token, now: Date.now(), reason }),
        onOpen: (sock) => {
          const conn = nextConn++;
          metrics.connectionsTotal++;
          const addr = new URL(url).hostname;
          attach(conn, sock, addr);
          log.debug("dial.open", { conn, url });
          dispatch({ kind: "connected", conn, addr, now: Date.now(), dial: token });
        },
      });
    }, afterMs);
    dialTimers.add(t);
  }

  function upgrade(addr: string, accept: Accept): Response {
    if ((lingering.get(addr) ?? 0) >= limits.maxConnsPerAddr) {
      return new Response(
        "too many connections from this address were cut as too slow and are still open\n",
        { status: 429 },
      );
    }
    // PROFILE §15 liveness: the WebSocket layer pings every connection at half this interval and closes it when
    // no pong comes back within it, so a peer that heartbeats only with pings is judged on its pongs. Users are
    // pinged too (the role is not known at the upgrade), so never less than PING_TIMEOUT_MIN_S: a client whose
    // event loop is busy for a second (decrypting a file) must not be cut by a short link timeout.
    const conn = nextConn++;
    const { socket, response } = accept(
      Math.max(PING_TIMEOUT_MIN_S, Math.ceil(federation.linkTimeoutMs / 1000)),
      () => {
        log.debug("conn.opened", { conn, addr });
        dispatch({ kind: "connected", conn, addr, now: Date.now() });
      },
    );
    metrics.connectionsTotal++;
    attach(conn, socket, addr);
    return response;
  }

  const host = opts.host ?? "0.0.0.0";
  let listener: Listener;
  try {
    listener = transport.listen(
      { host, port: opts.port ?? 8765, ...(opts.tls ? { tls: opts.tls } : {}) },
      (req, addr, accept) => {
        if (!accept) return http(req);
        return creatingChannel ? creatingChannel.then(() => upgrade(addr, accept)) : upgrade(addr, accept);
      },
    );
  } catch (e) {
    store.close();
    throw e;
  }
  const boundPort = listener.port;

  const publicHost = opts.publicHost ?? (host === "0.0.0.0" || host === "::" ? "localhost" : host);
  const wsUrl = `${opts.tls ? "wss" : "ws"}://${
    publicHost.includes(":") ? `[${publicHost}]` : publicHost
  }:${boundPort}`;

  /** The most bytes waiting for one connection now: signed frames in its queue plus its WebSocket buffer. */
  function maxUnsent(): number {
    let most = 0;
    for (const s of sockets.values()) {
      if (s.sock.open) most = Math.max(most, s.ready + s.sock.bufferedAmount);
    }
    return most;
  }

  const http = httpHandler({
    state: () => state,
    startedAt,
    fingerprint: fp,
    labModes,
    tls: !!opts.tls,
    wsUrl: () => wsUrl,
    counters: metrics,
    signatures: () => signer.signatures,
    connections: () => sockets.size,
    maxUnsent,
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
  const ticker = setInterval(() => dispatch({ kind: "tick", now: Date.now() }), tickMs);
  const labWarn = () => {
    if (labModes.length) {
      log.warn("lab_mode.on", { modes: labModes.join(","), note: "deliberately weakened node" });
    }
  };
  labWarn();
  const labTimer = labModes.length ? setInterval(labWarn, 60_000) : undefined;

  const advertiseHost = opts.publicHost ?? (host === "0.0.0.0" || host === "::" ? "localhost" : host);
  dispatch({ kind: "started", now: Date.now(), host: advertiseHost, port: boundPort });
  starting = false;
  await creatingChannel; // a first server is ready once its channel key exists (PROFILE §8)
  log.info("node.listening", {
    host,
    port: boundPort,
    server_id: state.config.serverId,
    fingerprint: fp,
    url: wsUrl,
    users_known: state.users.size,
  });

  const finished = listener.finished.then(() => {
    if (fatal) throw fatal;
  });
  finished.catch(() => {}); // handled by whoever awaits it; never an unhandled rejection

  function close(): Promise<void> {
    closed ??= (async () => {
      stopping = true;
      clearInterval(ticker);
      for (const t of dialTimers) clearTimeout(t);
      if (labTimer) clearInterval(labTimer);
      for (const s of sockets.values()) {
        s.sock.close(1001, "server shutting down");
      }
      await listener.close();
      try {
        store.close();
      } catch (e) {
        log.error("store.close_failed", { error: String(e) });
      }
      log.info("node.stopped", { server_id: state.config.serverId });
    })();
    return closed;
  }

  return {
    port: boundPort,
    host,
    get serverId() {
      return state.config.serverId;
    },
    publicKey: state.config.serverPub,
    linkedServers: () => [...state.links.keys()],
    finished,
    close,
  };
}
