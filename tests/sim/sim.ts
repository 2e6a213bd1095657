/**
 * Deterministic simulation: several nodes' reducers on one simulated clock and one simulated network, driven by a
 * seed (FoundationDB / TigerBeetle style). This file plays the shell for every node: it carries out effects,
 * delivers frames with latency, and injects faults (broken connections, duplicated and reordered frames, node
 * crashes). Signatures are simulated: a frame "signed" by a node carries `sim:<key alias>`, and the receiving
 * side accepts it only when that is the key the reducer expects (`expectedKey`), exactly as the real shell does
 * with RSA.
 */
import { initState, reduce } from "../../lib/core/reduce.ts";
import {
  type BootstrapEntry,
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type Effect,
  endpointUrl,
  type Event,
  type ServerRecord,
  type State,
  type UserRecord,
} from "../../lib/core/types.ts";
import { expectedKey } from "../../lib/core/verify.ts";
import { sha256HexSync as sha256Hex, sha256Sync as sha256 } from "../../lib/net/digest.ts";
import { msgRef } from "../../lib/protocol/msg_ref.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import {
  type AnyEnvelope,
  type Envelope,
  parseFrame,
  serializeEnvelope,
} from "../../lib/protocol/envelope.ts";
import { ForeignNode } from "./foreign.ts";

/** mulberry32: a small, good-enough seeded PRNG. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: T[]): T {
    return xs[this.int(xs.length)];
  }
}

/** Fault rates for node-to-node frames (users' connections are reliable). */
export interface Faults {
  /** A frame is lost and its connection breaks (what a lossy network does to TCP). */
  breakLink: number;
  /** A frame is delivered twice. */
  duplicate: number;
  /** A frame (and the frames behind it on its connection) is held back; frames on other connections overtake it. */
  reorder: number;
}

export const NO_FAULTS: Faults = { breakLink: 0, duplicate: 0, reorder: 0 };

type Endpoint =
  | { kind: "node"; node: SimNode; conn: number }
  | { kind: "user"; user: SimUser }
  | { kind: "foreign"; node: ForeignNode; conn: number };

/** A connection between two endpoints. */
export interface Pipe {
  a: Endpoint;
  b: Endpoint;
  open: boolean;
  /** FIFO: the last scheduled delivery time per direction. */
  lastAt: [number, number];
}

/** A simulated server: its reducer state (null while crashed) and its durable store. */
export interface SimNode {
  index: number;
  host: string;
  port: number;
  key: string;
  bootstrap: BootstrapEntry[];
  state: State | null;
  store: {
    serverId: string;
    users: Map<string, UserRecord>;
    servers: Map<string, ServerRecord>;
    homes: Map<string, string>;
    queue: Map<string, Envelope[]>;
    outbox: Map<string, { ref: string; frame: Envelope }[]>;
    channel: { version: number; creatorPub: string; members: Set<string> } | null;
    acceptedRefs: Map<string, number>;
  };
  pipes: Map<number, Pipe>;
  nextConn: number;
  dialTokens: Set<number>;
}

/** A simulated user: a client that tracks presence and what it received. */
export interface SimUser {
  userId: string;
  key: string;
  /** The server this user always connects to (queued frames wait there). */
  home: SimNode | ForeignNode | null;
  node: SimNode | ForeignNode | null;
  pipe: Pipe | null;
  online: boolean;
  directory: Map<string, string>;
  received: Map<string, number>;
}

/** A DM the simulation sent, to check delivery. */
export interface SentDm {
  id: string;
  from: string;
  to: string;
  ts: number;
  ciphertext: string;
  content_sig: string;
}

type Job = { at: number; seq: number; run: () => void };

/** The simulation. */
/** What a {@linkcode Sim} records: a node started from these inputs, or an event it reduced. */
export type Recorded =
  | {
    node: number;
    start: { config: Parameters<typeof initState>[0]; loaded: Parameters<typeof initState>[1] };
  }
  | { node: number; event: Event; effects: Effect[] };

export class Sim {
  now = 1_700_000_000_000;
  readonly rng: Rng;
  readonly nodes: SimNode[] = [];
  readonly users: SimUser[] = [];
  readonly dms = new Map<string, SentDm>();
  readonly violations: string[] = [];
  /** Scripted foreign servers (PROFILE §15 behaviours), see foreign.ts. */
  readonly foreign: ForeignNode[] = [];
  /** DMs handed to a foreign server's live link (it does not ACK) and lost in flight when that link broke. */
  readonly lostHandedToForeign = new Set<string>();
  /** How many times each DM (by ciphertext) was sent to a foreign server by our nodes. */
  readonly sentToForeign = new Map<string, number>();
  faults: Faults = NO_FAULTS;
  /** Counts of node-to-node frames by type (for the no-loop check). */
  serverFrames = new Map<string, number>();
  /** When set, every node start (its `initState` inputs) and every event fed to `reduce`, with the effects. */
  recording?: Recorded[];
  private queue: Job[] = [];
  private seq = 0;
  private aliases = new Map<string, number>();
  private freshIds = 0;
  private dmSeq = 0;

  constructor(readonly seed: number, readonly keys: string[]) {
    this.rng = new Rng(seed);
    keys.forEach((k, i) => this.aliases.set(k, i));
  }

  // --- scheduling -------------------------------------------------------------------------------------------
  at(time: number, run: () => void): void {
    const job = { at: time, seq: this.seq++, run };
    let lo = 0, hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const q = this.queue[mid];
      if (q.at < job.at || (q.at === job.at && q.seq < job.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, job);
  }

  /** Run every job due up to `until` (simulated ms). */
  runUntil(until: number): void {
    while (this.queue.length && this.queue[0].at <= until) {
      const job = this.queue.shift()!;
      this.now = job.at;
      job.run();
    }
    this.now = until;
  }

  /** Advance the clock by `ms`. */
  run(ms: number): void {
    this.runUntil(this.now + ms);
  }

  // --- nodes ------------------------------------------------------------------------------------------------
  addNode(keyIndex: number, bootstrapTo: number[]): SimNode {
    const index = this.nodes.length;
    const node: SimNode = {
      index,
      host: `n${index}`,
      port: 1000 + index,
      key: this.keys[keyIndex],
      bootstrap: [],
      state: null,
      store: {
        serverId: `00000000-0000-4000-8000-${String(index).padStart(12, "0")}`,
        users: new Map(),
        servers: new Map(),
        homes: new Map(),
        queue: new Map(),
        outbox: new Map(),
        channel: null,
        acceptedRefs: new Map(),
      },
      pipes: new Map(),
      nextConn: 1,
      dialTokens: new Set(),
    };
    node.bootstrap = bootstrapTo.map((i) => ({
      host: this.nodes[i].host,
      port: this.nodes[i].port,
      pubkey: this.nodes[i].key,
    }));
    this.nodes.push(node);
    return node;
  }

  /** Start (or restart) a node from its store. */
  start(node: SimNode): void {
    const config: Parameters<typeof initState>[0] = {
      serverId: node.store.serverId,
      serverPub: node.key,
      serverPubPem: node.key,
      limits: { ...DEFAULT_LIMITS },
      federation: {
        ...DEFAULT_FEDERATION,
        bootstrap: node.bootstrap,
        heartbeatMs: 1000,
        linkTimeoutMs: 3000,
      },
      labWeakKeys: false,
      labReplay: false,
    };
    const loaded: Parameters<typeof initState>[1] = {
      users: [...node.store.users.values()],
      servers: [...node.store.servers.values()],
      homes: [...node.store.homes],
      queued: [...node.store.queue].map(([u, q]) => [u, q.length] as [string, number]).filter(([, n]) =>
        n > 0
      ),
      outbox: [...node.store.outbox].map(([k, q]) => [k, q.length] as [string, number]).filter(([, n]) =>
        n > 0
      ),
      channel: node.store.channel
        ? {
          version: node.store.channel.version,
          creatorPub: node.store.channel.creatorPub,
          members: [...node.store.channel.members],
        }
        : null,
      acceptedRefs: [...node.store.acceptedRefs],
    };
    this.recording?.push(structuredClone({ node: node.index, start: { config, loaded } }));
    node.state = initState(config, loaded);
    node.nextConn = 1;
    this.step(node, { kind: "started", now: this.now, host: node.host, port: node.port });
    const tick = () => {
      if (node.state === null) return;
      this.step(node, { kind: "tick", now: this.now });
      this.at(this.now + 250, tick);
    };
    const gen = node.state;
    this.at(this.now + 250, () => node.state === gen && tick());
  }

  /**
   * Crash a node: state lost, store kept. Frames it already sent still arrive (the kernel flushes a dead
   * process's sockets before closing them); then its connections close.
   */
  crash(node: SimNode): void {
    if (!node.state) return;
    node.state = null;
    for (const pipe of [...node.pipes.values()]) {
      this.at(Math.max(this.now, ...pipe.lastAt) + 1, () => this.breakPipe(pipe));
    }
    node.pipes.clear();
    node.dialTokens.clear();
  }

  private step(node: SimNode, ev: Event): void {
    if (!node.state) return;
    const r = reduce(node.state, ev);
    this.recording?.push(structuredClone({ node: node.index, event: ev, effects: r.effects }));
    node.state = r.state;
    for (const fx of r.effects) this.effect(node, fx);
  }

  private effect(node: SimNode, fx: Effect): void {
    switch (fx.kind) {
      case "send": {
        const pipe = node.pipes.get(fx.conn);
        if (!pipe || !pipe.open) return;
        const frame = { ...fx.frame } as Envelope;
        if (fx.seal) {
          // Simulated channel crypto: the wrap names the channel key it carries and whom it is for.
          const p = structuredClone(frame.payload) as Record<string, unknown>;
          const wrap = `wrap:${node.store.channel?.creatorPub.slice(-12)}:for:${fx.seal.forKey.slice(-12)}`;
          if (fx.seal.kind === "welcome") (p.public_channel as Record<string, unknown>).wrapped_key = wrap;
          else if (fx.seal.kind === "updated") (p.wraps as Record<string, unknown>[])[0].wrapped_key = wrap;
          else {
            (p.shares as Record<string, unknown>[])[0].wrapped_public_channel_key = wrap;
            p.content_sig = "channel-sig";
          }
          frame.payload = p as typeof frame.payload;
        }
        if (fx.sign) frame.sig = `sim:${this.aliases.get(node.key)}`;
        this.transmit(
          pipe,
          pipe.a.kind === "node" && pipe.a.node === node && pipe.a.conn === fx.conn ? 0 : 1,
          frame,
        );
        break;
      }
      case "close": {
        const pipe = node.pipes.get(fx.conn);
        if (pipe) this.closePipe(pipe);
        break;
      }
      case "dial": {
        node.dialTokens.add(fx.token);
        const gen = node.state;
        this.at(this.now + fx.afterMs, () => this.dial(node, gen, fx.token, endpointUrl(fx)));
        break;
      }
      case "deliverQueued":
      case "flushOutbox": {
        const pipe = node.pipes.get(fx.conn);
        const k = fx.kind === "deliverQueued" ? fx.userId : fx.serverId;
        if (!pipe?.open) return;
        // Queued frames are handed over and deleted; outbox frames stay until the other server ACKs them.
        // Outbox rows for a server that does not speak the ACK extension go without `ack` and are forgotten.
        const plain = fx.kind === "flushOutbox" && !fx.confirm;
        const frames = fx.kind === "deliverQueued"
          ? node.store.queue.get(k) ?? []
          : (node.store.outbox.get(k) ?? []).map((r) => {
            if (!plain) return r.frame;
            const { ack: _ack, ...payload } = r.frame.payload as Record<string, unknown>;
            return { ...r.frame, payload } as Envelope;
          });
        if (fx.kind === "deliverQueued" || plain) {
          node.store[fx.kind === "deliverQueued" ? "queue" : "outbox"].delete(k);
        }
        const dir = pipe.a.kind === "node" && pipe.a.node === node && pipe.a.conn === fx.conn ? 0 : 1;
        for (const f of frames) {
          this.transmit(pipe, dir, {
            ...f,
            from: node.state!.config.serverId,
            sig: `sim:${this.aliases.get(node.key)}`,
          });
        }
        break;
      }
      case "outboxHanded":
        node.store.outbox.delete(fx.serverId);
        break;
      case "outboxAcked": {
        const rows = node.store.outbox.get(fx.serverId) ?? [];
        node.store.outbox.set(fx.serverId, rows.filter((r) => r.ref !== fx.msgRef));
        break;
      }
      case "createChannel":
      case "adoptChannel": {
        const gen = node.state;
        const version = fx.kind === "adoptChannel" ? fx.version : 1;
        const creatorPub = fx.kind === "adoptChannel" ? fx.creatorPub : node.key;
        this.at(this.now + 5, () => {
          if (node.state !== gen) return;
          node.store.channel = { version, creatorPub, members: new Set() };
          this.step(node, { kind: "channelReady", now: this.now, version, creatorPub });
        });
        break;
      }
      case "persist": {
        const op = fx.op;
        if (op.op === "upsertUser") node.store.users.set(op.user.userId, op.user);
        else if (op.op === "pinServer") {
          const old = node.store.servers.get(op.server.serverId);
          node.store.servers.set(op.server.serverId, {
            ...op.server,
            pubkey: old?.pubkey ?? op.server.pubkey,
          });
        } else if (op.op === "setServerId") node.store.serverId = op.serverId;
        else if (op.op === "setHome") node.store.homes.set(op.userId, op.serverId);
        else if (op.op === "enqueue") {
          node.store.queue.set(op.userId, [...(node.store.queue.get(op.userId) ?? []), op.frame]);
        } else if (op.op === "outbox") {
          const ref = msgRef(sha256(canonicalJson(op.frame.payload)));
          node.store.outbox.set(op.serverId, [...(node.store.outbox.get(op.serverId) ?? []), {
            ref,
            frame: op.frame,
          }]);
        } else if (op.op === "acceptRef") node.store.acceptedRefs.set(op.ref, op.now);
        else if (op.op === "channel") {
          if (node.store.channel) node.store.channel.version = op.version;
        } else node.store.channel?.members.add(op.memberId);
        break;
      }
      case "probe": {
        // /.well-known/socp: our nodes say socp-deno/…; a foreign server has none.
        const host = /^http:\/\/([^:/]+)/.exec(fx.url)?.[1];
        const ours = this.nodes.some((n) => n.host === host);
        const gen = node.state;
        this.at(this.now + 5, () => {
          if (node.state !== gen) return;
          this.step(node, {
            kind: "software",
            now: this.now,
            serverId: fx.serverId,
            software: ours ? "socp-deno/sim" : "",
          });
        });
        break;
      }
      case "log":
        break;
    }
  }

  private dial(node: SimNode, gen: State | null, token: number, url: string): void {
    if (node.state !== gen || !node.state || !node.dialTokens.delete(token)) return;
    const fm = /^ws:\/\/f(\d+):\d+$/.exec(url);
    if (fm) return this.dialForeign(node, token, this.foreign[Number(fm[1])]);
    const m = /^ws:\/\/n(\d+):\d+$/.exec(url);
    const target = m ? this.nodes[Number(m[1])] : undefined;
    if (!target?.state) {
      this.step(node, { kind: "dialFailed", token, now: this.now, reason: "refused" });
      return;
    }
    const ca = node.nextConn++;
    const cb = target.nextConn++;
    const pipe: Pipe = {
      a: { kind: "node", node, conn: ca },
      b: { kind: "node", node: target, conn: cb },
      open: true,
      lastAt: [0, 0],
    };
    node.pipes.set(ca, pipe);
    target.pipes.set(cb, pipe);
    this.step(target, { kind: "connected", conn: cb, addr: node.host, now: this.now });
    this.step(node, { kind: "connected", conn: ca, addr: target.host, now: this.now, dial: token });
  }

  private dialForeign(node: SimNode, token: number, target: ForeignNode | undefined): void {
    if (!target?.up) {
      this.step(node, { kind: "dialFailed", token, now: this.now, reason: "refused" });
      return;
    }
    const ca = node.nextConn++;
    const cb = target.nextConn++;
    const pipe: Pipe = {
      a: { kind: "node", node, conn: ca },
      b: { kind: "foreign", node: target, conn: cb },
      open: true,
      lastAt: [0, 0],
    };
    node.pipes.set(ca, pipe);
    target.pipes.set(cb, pipe);
    target.accepted(cb);
    this.step(node, { kind: "connected", conn: ca, addr: target.host, now: this.now, dial: token });
  }

  /** A foreign server dials one of our nodes (by host) and JOINs it. */
  dialFromForeign(f: ForeignNode, host: string): void {
    const target = this.nodes.find((n) => n.host === host);
    if (!target?.state || !f.up) return;
    const ca = f.nextConn++;
    const cb = target.nextConn++;
    const pipe: Pipe = {
      a: { kind: "foreign", node: f, conn: ca },
      b: { kind: "node", node: target, conn: cb },
      open: true,
      lastAt: [0, 0],
    };
    f.pipes.set(ca, pipe);
    target.pipes.set(cb, pipe);
    this.step(target, { kind: "connected", conn: cb, addr: f.host, now: this.now });
    f.dialed(ca, host);
  }

  /** Add a foreign server; it joins through node `bootstrapTo` when started. */
  addForeign(keyIndex: number): ForeignNode {
    const key = this.keys[keyIndex];
    const f = new ForeignNode(this, this.foreign.length, key, `${this.aliases.get(key)}`);
    this.foreign.push(f);
    return f;
  }

  // --- the network ------------------------------------------------------------------------------------------
  transmit(pipe: Pipe, dir: 0 | 1, frame: Envelope): void {
    const to = dir === 0 ? pipe.b : pipe.a;
    const between = pipe.a.kind !== "user" && pipe.b.kind !== "user";
    if (to.kind === "foreign" && frame.type === "SERVER_DELIVER") {
      // PROFILE §15: a server that does not speak the ACK extension gets each DM once; at most one more copy may
      // leave when the DM was sent before its /.well-known/socp answered and the link broke in between.
      const ct = (frame.payload as { ciphertext: string }).ciphertext;
      const n = (this.sentToForeign.get(ct) ?? 0) + 1;
      this.sentToForeign.set(ct, n);
      if (n > 2) this.violations.push(`${ct} sent ${n} times to the foreign server (it never ACKs)`);
    }
    if (to.kind === "foreign" && frame.type === "ERROR") {
      const p = frame.payload as { code: string; detail?: string };
      if (p.code !== "USER_NOT_FOUND") {
        this.violations.push(`ERROR ${p.code} to the foreign server: ${p.detail ?? ""}`);
      }
    }
    const text = serializeEnvelope(frame);
    if (between) this.serverFrames.set(frame.type, (this.serverFrames.get(frame.type) ?? 0) + 1);
    if (between && this.rng.chance(this.faults.breakLink)) {
      this.lostInFlight(to, text);
      this.breakPipe(pipe);
      return;
    }
    // A WebSocket delivers in order, so each connection stays FIFO; "reorder" holds a frame (and so the frames
    // behind it) back, letting frames on other connections overtake it, as a congested path does.
    const latency = 1 + this.rng.int(20) +
      (between && this.rng.chance(this.faults.reorder) ? this.rng.int(300) : 0);
    const at = Math.max(this.now + latency, pipe.lastAt[dir]);
    pipe.lastAt[dir] = at;
    this.at(at, () => pipe.open ? this.arrive(to, text) : this.lostInFlight(to, text));
    if (between && this.rng.chance(this.faults.duplicate)) {
      // A duplicate (a relay or retransmission bug) may come any time later.
      this.at(at + 1 + this.rng.int(500), () => pipe.open && this.arrive(to, text));
    }
  }

  /** DMs whose USER_DELIVER was in flight when the recipient's connection closed (the last hop's inherent race). */
  readonly lostAtLastHop = new Set<string>();

  private lostInFlight(to: Endpoint, text: string): void {
    const f = to.kind === "foreign" && text.includes('"SERVER_DELIVER"')
      ? /"ct\.(dm-[^"]+)"/.exec(text)
      : null;
    if (f) this.lostHandedToForeign.add(f[1]);
    const m = to.kind === "user" && text.includes('"USER_DELIVER"') ? /"ct\.(dm-[^"]+)"/.exec(text) : null;
    if (m) this.lostAtLastHop.add(m[1]);
  }

  private arrive(to: Endpoint, text: string): void {
    if (to.kind === "user") return this.userReceives(to.user, text);
    if (to.kind === "foreign") return to.node.receive(to.conn, text);
    const node = to.node;
    if (!node.state) return;
    const parsed = parseFrame(text);
    const digest = parsed.ok ? sha256Hex(canonicalJson(parsed.envelope.payload)) : "";
    let sig: "valid" | "invalid" | "absent" = "absent";
    let sigKey: string | undefined;
    if (parsed.ok && parsed.envelope.sig) {
      const key = expectedKey(node.state, node.state.conns.get(to.conn), parsed.envelope);
      const ok = key !== undefined && parsed.envelope.sig === `sim:${this.aliases.get(key)}`;
      sig = ok ? "valid" : "invalid";
      sigKey = ok ? key : undefined;
    }
    this.step(node, {
      kind: "frame",
      conn: to.conn,
      now: this.now,
      parsed,
      digest,
      sig,
      sigKey,
      fresh: `sim-fresh-${this.freshIds++}`,
    });
  }

  /** Close a connection the way a WebSocket close does: both ends see "closed" a moment later. */
  closePipe(pipe: Pipe): void {
    if (!pipe.open) return;
    this.at(this.now + 1, () => this.breakPipe(pipe));
  }

  private breakPipe(pipe: Pipe): void {
    if (!pipe.open) return;
    pipe.open = false;
    for (const end of [pipe.a, pipe.b]) {
      if (end.kind === "node") {
        if (end.node.pipes.get(end.conn) !== pipe) continue;
        end.node.pipes.delete(end.conn);
        this.step(end.node, { kind: "closed", conn: end.conn, now: this.now });
      } else if (end.kind === "foreign") {
        if (end.node.pipes.get(end.conn) === pipe) end.node.closed(end.conn);
      } else if (end.user.pipe === pipe) {
        end.user.pipe = null;
        end.user.node = null;
        end.user.online = false;
        end.user.directory.clear();
      }
    }
  }

  // --- users ------------------------------------------------------------------------------------------------
  addUser(keyIndex: number): SimUser {
    const n = this.users.length;
    const user: SimUser = {
      userId: `aaaaaaaa-0000-4000-8000-${String(n).padStart(12, "0")}`,
      key: this.keys[keyIndex],
      home: null,
      node: null,
      pipe: null,
      online: false,
      directory: new Map(),
      received: new Map(),
    };
    this.users.push(user);
    return user;
  }

  /** Connect a user to its home node (the first node it was given) and say hello. */
  connect(user: SimUser, to: SimNode | ForeignNode): void {
    user.home ??= to;
    if (user.home instanceof ForeignNode) return this.connectForeign(user, user.home);
    const node = user.home;
    if (user.pipe || !node.state) return;
    const conn = node.nextConn++;
    const pipe: Pipe = {
      a: { kind: "user", user },
      b: { kind: "node", node, conn },
      open: true,
      lastAt: [0, 0],
    };
    node.pipes.set(conn, pipe);
    user.pipe = pipe;
    user.node = node;
    this.step(node, { kind: "connected", conn, addr: `u-${user.userId}`, now: this.now });
    this.transmit(pipe, 0, {
      type: "USER_HELLO",
      from: user.userId,
      to: "",
      ts: this.now,
      payload: { client: "sim", pubkey: user.key, enc_pubkey: user.key },
    });
  }

  private connectForeign(user: SimUser, f: ForeignNode): void {
    if (user.pipe || !f.up) return;
    const conn = f.nextConn++;
    const pipe: Pipe = {
      a: { kind: "user", user },
      b: { kind: "foreign", node: f, conn },
      open: true,
      lastAt: [0, 0],
    };
    f.pipes.set(conn, pipe);
    f.accepted(conn, user.userId);
    user.pipe = pipe;
    user.node = f;
    this.transmit(pipe, 0, {
      type: "USER_HELLO",
      from: user.userId,
      to: "*",
      ts: this.now,
      payload: { client: "sim", pubkey: user.key, enc_pubkey: user.key },
    });
  }

  disconnect(user: SimUser): void {
    if (user.pipe) this.closePipe(user.pipe);
  }

  /** DMs whose sender's server said "accepted" (ACK): they must arrive, however long it takes. */
  readonly acked = new Set<string>();
  private readonly awaitingAck = new Map<string, string>();
  /** Public messages sent, and who received each. */
  readonly publics = new Map<string, { from: string; got: Map<string, number> }>();

  /** Send a public message (opaque ciphertext) to everyone. */
  all(from: SimUser): string | null {
    if (!from.pipe || !from.online) return null;
    const id = `pub-${this.seed}-${this.dmSeq++}`;
    this.publics.set(id, { from: from.userId, got: new Map() });
    this.transmit(from.pipe, 0, {
      type: "MSG_PUBLIC_CHANNEL",
      from: from.userId,
      to: "public",
      ts: this.now,
      payload: { ciphertext: `pub.${id}`, sender_pub: from.key, content_sig: `cs.${id}` },
    });
    return id;
  }

  /** Send a DM (the ciphertext is an opaque token the servers must carry unchanged). */
  dm(from: SimUser, to: SimUser): SentDm | null {
    if (!from.pipe || !from.online) return null;
    const id = `dm-${this.seed}-${this.dmSeq++}`;
    const dm: SentDm = {
      id,
      from: from.userId,
      to: to.userId,
      ts: this.now,
      ciphertext: `ct.${id}`,
      content_sig: `cs.${id}`,
    };
    this.dms.set(id, dm);
    const payload = { ciphertext: dm.ciphertext, sender_pub: from.key, content_sig: dm.content_sig };
    this.awaitingAck.set(msgRef(sha256(canonicalJson(payload))), id);
    this.transmit(from.pipe, 0, { type: "MSG_DIRECT", from: from.userId, to: to.userId, ts: dm.ts, payload });
    return dm;
  }

  private userReceives(user: SimUser, text: string): void {
    const r = parseFrame(text);
    if (!r.ok) return void this.violations.push(`user ${user.userId} got an unparsable frame`);
    const env = r.envelope as AnyEnvelope;
    switch (env.type) {
      case "ACK": {
        // Ours answer ACK USER_HELLO; the foreign server ACK USER_HELLO_OK (PROFILE §15 hello forms).
        if (env.payload.msg_ref === "USER_HELLO" || env.payload.msg_ref === "USER_HELLO_OK") {
          user.online = true;
        }
        const id = this.awaitingAck.get(env.payload.msg_ref);
        if (id) this.acked.add(id);
        break;
      }
      case "MSG_PUBLIC_CHANNEL": {
        const id = env.payload.ciphertext.replace(/^pub\./, "");
        const rec = this.publics.get(id);
        if (!rec) return void this.violations.push(`${user.userId} received an unknown public message ${id}`);
        const n = (rec.got.get(user.userId) ?? 0) + 1;
        rec.got.set(user.userId, n);
        if (n > 1) this.violations.push(`public ${id} delivered ${n} times to ${user.userId}`);
        if (env.from !== rec.from) this.violations.push(`public ${id}: from ${env.from} != ${rec.from}`);
        if (user.userId === rec.from) this.violations.push(`public ${id} echoed to its sender`);
        break;
      }
      case "USER_ADVERTISE":
        user.directory.set(env.payload.user_id, env.payload.server_id);
        break;
      case "USER_REMOVE":
        if (user.directory.get(env.payload.user_id) === env.payload.server_id) {
          user.directory.delete(env.payload.user_id);
        }
        break;
      case "USER_DELIVER": {
        const id = env.payload.ciphertext.replace(/^ct\./, "");
        const dm = this.dms.get(id);
        const n = (user.received.get(id) ?? 0) + 1;
        user.received.set(id, n);
        if (!dm) this.violations.push(`${user.userId} received an unknown message ${id}`);
        else {
          if (dm.to !== user.userId) {
            this.violations.push(`${id} for ${dm.to} was delivered to ${user.userId}`);
          }
          if (env.ts !== dm.ts) this.violations.push(`${id} arrived with ts ${env.ts}, sent with ${dm.ts}`);
          if (env.payload.sender !== dm.from) {
            this.violations.push(`${id}: sender ${env.payload.sender} != ${dm.from}`);
          }
          if (env.payload.content_sig !== dm.content_sig) this.violations.push(`${id}: content_sig altered`);
        }
        if (n > 1) this.violations.push(`${id} delivered ${n} times to ${user.userId}`);
        break;
      }
      default:
        break;
    }
  }

  // --- invariants -------------------------------------------------------------------------------------------
  /** Who is online where, by the simulation's own account. */
  truth(): Map<string, string> {
    const m = new Map<string, string>();
    for (const u of this.users) {
      if (!u.online || !u.node) continue;
      if (u.node instanceof ForeignNode) {
        if (u.node.up) m.set(u.userId, u.node.id);
      } else if (u.node.state) m.set(u.userId, u.node.state.config.serverId);
    }
    return m;
  }

  /** Differences between the truth and what each server and each online user believes. */
  presenceDiffs(): string[] {
    const truth = this.truth();
    const out: string[] = [];
    const show = (m: Map<string, string>) =>
      [...m].sort().map(([u, s]) => `${u.slice(-3)}@${s.slice(-3)}`).join(",");
    for (const n of this.nodes) {
      if (!n.state) continue;
      const seen = new Map([...n.state.presence].map(([u, p]) => [u, p.serverId]));
      if (show(seen) !== show(truth)) {
        out.push(`node ${n.index} believes ${show(seen)}; truth ${show(truth)}`);
      }
    }
    for (const f of this.foreign) {
      if (!f.up) continue;
      const seen = new Map([...f.presence, ...[...f.users.keys()].map((u) => [u, f.id] as [string, string])]);
      if (show(seen) !== show(truth)) {
        out.push(`foreign ${f.id.slice(-3)} believes ${show(seen)}; truth ${show(truth)}`);
      }
    }
    for (const u of this.users) {
      if (u.online && show(u.directory) !== show(truth)) {
        out.push(`user ${u.userId.slice(-3)} believes ${show(u.directory)}; truth ${show(truth)}`);
      }
    }
    return out;
  }

  /** Servers that are up but not linked to every other server that is up. */
  meshGaps(): string[] {
    const up = this.nodes.filter((n) => n.state);
    const out: string[] = [];
    for (const n of up) {
      for (const m of up) {
        if (n !== m && !n.state!.links.has(m.state!.config.serverId)) {
          out.push(`node ${n.index} has no link to node ${m.index}`);
        }
      }
      for (const f of this.foreign) {
        if (f.up && !n.state!.links.has(f.id)) out.push(`node ${n.index} has no link to foreign ${f.host}`);
        if (f.up && ![...f.links.values()].includes(n.state!.config.serverId)) {
          out.push(`foreign ${f.host} has no link to node ${n.index}`);
        }
      }
    }
    return out;
  }
}
