/**
 * Deterministic simulation: several nodes on one simulated clock and one simulated network, driven by a seed
 * (FoundationDB / TigerBeetle style). Each node runs the node's own effect executor (lib/net/executor.ts) over the
 * real store (lib/store/sqlite.ts on in-memory SQLite, which outlives the node's crashes as its file would; a
 * write may fail, and the node then stops and restarts from it), a simulated transport (this file's pipes, which
 * deliver with latency and inject faults: broken connections, duplicated and reordered frames, node crashes;
 * each node-side socket buffers what it is handed and the network drains it every tick, as fast as the peer
 * reads, so back-pressure, the too-slow cut and lingering run), the node's own deadline clock (lib/net/clock.ts:
 * the reducer is ticked at its next deadline, never on a period) and the simulated clock, timers and frame ids;
 * after each scheduled job the run loop lets every promise settle (`setImmediate`), so runs stay deterministic.
 * Signatures are simulated: a frame "signed" by a node carries `sim:<key alias>`, and the executor's inbound
 * pipeline accepts it only when that is the key the reducer expects (`expectedKey`), exactly as it does with
 * RSA. The channel key's crypto is simulated too, unless `realChannel` asks for the real holder. Users are
 * scripted (`SimUser`) or driven by the real client core (`ClientUser`, client_user.ts).
 */
import { initState, nextDeadline } from "../../lib/core/reduce.ts";
import { DeadlineClock } from "../../lib/net/clock.ts";
import {
  type BootstrapEntry,
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type Effect,
  type Event,
  type State,
} from "../../lib/core/types.ts";
import { sha256HexSync as sha256Hex, sha256Sync as sha256 } from "../../lib/net/digest.ts";
import { msgRef } from "../../lib/protocol/msg_ref.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import {
  type AnyEnvelope,
  type Envelope,
  parseFrame,
  serializeEnvelope,
} from "../../lib/protocol/envelope.ts";
import type { PrivateKey } from "../../lib/crypto/rsa.ts";
import { ChannelKeyHolder } from "../../lib/net/channel_key.ts";
import {
  type ChannelKeys,
  createExecutor,
  type Executor,
  type FrameSigner,
  type StoreLike,
  type Timers,
  type Write,
} from "../../lib/net/executor.ts";
import type { Accept, DialHandlers, Socket, Transport } from "../../lib/net/transport.ts";
import { Logger } from "../../lib/net/log.ts";
import { Counters } from "../../lib/net/http.ts";
import { Store } from "../../lib/store/sqlite.ts";
import type { SealedKey, SealSecret } from "../../lib/crypto/keyfile.ts";
import { setImmediate } from "node:timers";
import { ForeignNode } from "./foreign.ts";
import { ClientUser } from "./client_user.ts";

/** The simulation's DM id in a ciphertext (`ct.<id>`, then `~` and filler when padded). */
function dmIdOf(ciphertext: unknown): string | undefined {
  return typeof ciphertext === "string" && ciphertext.startsWith("ct.")
    ? ciphertext.slice(3).split("~")[0]
    : undefined;
}

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
  /**
   * A store write fails (the disk is full, the database is locked): per write, on every node. The node is
   * crash-only: it stops at once and is restarted from its database a moment later.
   */
  storeFail?: number;
  /**
   * A store read the node acts on fails (queued and outbox row ids, a hand-over's frames): per read, on every
   * node; crash-only like a failed write. Drawn from a stream of its own, so runs without it are unchanged.
   */
  readFail?: number;
  /** A user stops reading its connection for a while (its node's socket buffer fills; drain, too-slow, linger). */
  stall?: number;
}

export const NO_FAULTS: Faults = { breakLink: 0, duplicate: 0, reorder: 0 };

/** What an injected store failure throws (told apart from a real failure, which is a violation). */
export const INJECTED = "sim: injected store failure";

/** Network ticks: a socket's buffer is drained every this many simulated ms. */
export const DRAIN_MS = 5;

/** Bytes a reader takes from its connection per drain tick (a user that keeps up, another server). */
export const READ_BYTES = 32 * 1024;

/** The sealed-key row the simulated channel key stands for (its crypto is simulated, see channelKeysOf). */
const SIM_SEALED = {
  kdf: "PBKDF2-SHA256",
  iterations: 600_000,
  salt: "sim",
  cipher: "AES-256-GCM",
  iv: "sim",
  data: "sim",
} as unknown as SealedKey;

type Endpoint =
  | { kind: "node"; node: SimNode; conn: number; sock: SimSocket }
  | { kind: "user"; user: SimUser }
  | { kind: "client"; client: ClientUser }
  | { kind: "foreign"; node: ForeignNode; conn: number };

/** A connection between two endpoints. */
export interface Pipe {
  a: Endpoint;
  b: Endpoint;
  open: boolean;
  /** FIFO: the last scheduled delivery time per direction. */
  lastAt: [number, number];
}

/**
 * A node's end of a pipe, as its executor sees it: a transport {@linkcode Socket} with a send buffer, as the
 * runtime's WebSocket has. `send` appends to the buffer (`bufferedAmount` grows); the network drains it every
 * {@linkcode DRAIN_MS} by what the peer reads (nothing while a user has stopped reading), so the executor's drain,
 * too-slow cut and lingering run as they do over TCP. `close` waits for the buffer to empty (a close frame goes
 * after the data), so a socket cut while its peer does not read lingers until the peer reads or goes away.
 */
class SimSocket implements Socket {
  onMessage: (data: unknown) => void = () => {};
  onClose: () => void = () => {};
  /** Frames handed over and not yet on the wire. */
  readonly buffer: string[] = [];
  bufferedAmount = 0;
  /** `close` was called: the pipe closes once the buffer is empty. */
  closing = false;
  /** A drain job is scheduled. */
  draining = false;
  constructor(
    private readonly sim: Sim,
    readonly pipe: Pipe,
    readonly dir: 0 | 1,
    /** The node run that owns this end is still up (a crashed run neither sends nor hears). */
    readonly alive: () => boolean,
  ) {}
  get open(): boolean {
    return this.pipe.open && !this.closing;
  }
  send(text: string): void {
    if (!this.pipe.open || this.closing || !this.alive()) return;
    this.buffer.push(text);
    this.bufferedAmount += text.length;
    this.sim.drainLater(this);
  }
  close(): void {
    if (!this.alive() || this.closing) return;
    this.closing = true;
    if (this.buffer.length === 0) this.sim.closePipe(this.pipe);
    else this.sim.drainLater(this);
  }
}

/** Accept a simulated connection: the socket opens once the executor has attached it. */
function accepting(sock: SimSocket): Accept {
  return (_idle, onOpen) => {
    queueMicrotask(() => sock.alive() && onOpen(sock));
    return { socket: sock, response: new Response(null) };
  };
}

/**
 * Let every pending promise settle: `setImmediate` runs after the whole microtask queue has drained (a
 * MessageChannel message does not: Deno resolves it among the microtasks).
 */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A simulated server: its reducer state (null while crashed), its executor and its durable store. */
export interface SimNode {
  index: number;
  host: string;
  port: number;
  key: string;
  bootstrap: BootstrapEntry[];
  state: State | null;
  /** The running executor (null while crashed). */
  ex: Executor | null;
  /** Which run of the node is current: bumped at each start and crash. */
  gen: number;
  /** The node's database: the real store over in-memory SQLite (it outlives crashes, as the file does). */
  db: Store;
  pipes: Map<number, Pipe>;
  nextConn: number;
  /** The shell's counters (kept across restarts: too-slow cuts and so on). */
  counters: Counters;
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
  /** False while the user does not read its connection (see {@linkcode Sim.stall}). */
  reading: boolean;
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
  /** When set, every frame put on the wire (simulated time, direction, text), in order. */
  trace?: string[];
  /** When set, every node start (its `initState` inputs) and every event fed to `reduce`, with the effects. */
  recording?: Recorded[];
  private queue: Job[] = [];
  private seq = 0;
  private aliases = new Map<string, number>();
  /** Hellos sent so far (their nonces). */
  private hellos = 0;
  private freshIds = 0;
  private frameIds = 0;
  private dmSeq = 0;
  /** Draws for store failures and restarts after them (a stream of its own, so other draws do not shift). */
  readonly faultRng: Rng;
  /** Draws for failing reads (their own stream: a seed without read failures runs as it did before them). */
  readonly readFaultRng: Rng;
  /** The executors' per-turn budget of frame bytes: small, so that effects held back to later turns run too. */
  turnBytes = 4096;
  /** Store writes that failed (injected), each followed by a crash and a restart. */
  storeFailures = 0;
  /** The writes and reads that failed: when, where, which and with what. */
  readonly failedWrites: string[] = [];
  /** How many of {@linkcode failedWrites} were reads. */
  failedReads = 0;

  constructor(readonly seed: number, readonly keys: string[]) {
    this.rng = new Rng(seed);
    this.faultRng = new Rng(seed ^ 0x5ee0);
    this.readFaultRng = new Rng(seed ^ 0x4ead);
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

  /** Run every job due up to `until` (simulated ms); after each, every promise it started settles. */
  async runUntil(until: number): Promise<void> {
    await settle();
    while (this.queue.length && this.queue[0].at <= until) {
      const job = this.queue.shift()!;
      this.now = job.at;
      job.run();
      await settle();
      await this.realSettle();
    }
    this.now = until;
  }

  /**
   * Real crypto started by the last job (the real channel-key holder's RSA and sealing), and what to do once it is
   * done. The run loop waits for all of it with the clock stopped, then hands the results on one at a time in the
   * order the operations started, letting every promise settle after each: runs stay deterministic however long
   * the crypto takes.
   */
  private realOps: { done: Promise<unknown>; release: () => void }[] = [];

  private async realSettle(): Promise<void> {
    while (this.realOps.length > 0) {
      const ops = this.realOps.splice(0);
      await Promise.all(ops.map((o) => o.done));
      for (const o of ops) {
        o.release();
        await settle();
      }
    }
  }

  /**
   * When set, nodes hold the public channel's key with the real {@linkcode ChannelKeyHolder} and its crypto
   * (RSA-OAEP wraps, RSA-PSS key-share signatures, the key sealed at rest with HKDF under the node's random key) instead of the simulated
   * one: `privateKeys` are the nodes' identity keys (by public key); node 0 starts holding `channelKey` (as if it
   * had created it: sealed in its database as `sealed`), the others adopt it from the wraps they are sent.
   * A node restarted after adopting takes the key back from this record, not by unsealing its row.
   */
  realChannel?: {
    privateKeys: Map<string, PrivateKey>;
    channelKey: PrivateKey;
    sealed: SealedKey;
    secret: SealSecret;
  };

  /** Advance the clock by `ms`. */
  run(ms: number): Promise<void> {
    return this.runUntil(this.now + ms);
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
      ex: null,
      gen: 0,
      db: Store.open(":memory:"),
      counters: new Counters(),
      pipes: new Map(),
      nextConn: 1,
    };
    node.db.setIdentity({
      serverId: `00000000-0000-4000-8000-${String(index).padStart(12, "0")}`,
      pubkey: node.key,
      sealed: SIM_SEALED,
    }, this.now);
    node.bootstrap = bootstrapTo.map((i) => ({
      host: this.nodes[i].host,
      port: this.nodes[i].port,
      pubkey: this.nodes[i].key,
    }));
    this.nodes.push(node);
    return node;
  }

  /** Start (or restart) a node from its store: the node's own executor, over the simulated network. */
  start(node: SimNode): void {
    const config: Parameters<typeof initState>[0] = {
      serverId: node.db.getIdentity()!.serverId,
      serverPub: node.key,
      serverPubPem: node.key,
      // A small bound on unsent bytes (high-water mark 16 KiB), so that a user who stops reading for a few
      // seconds is cut as too slow under simulation.
      limits: { ...DEFAULT_LIMITS, maxUnsentBytes: 48 * 1024 },
      federation: {
        ...DEFAULT_FEDERATION,
        bootstrap: node.bootstrap,
        heartbeatMs: 1000,
        linkTimeoutMs: 3000,
      },
      labWeakKeys: false,
      labReplay: false,
    };
    if (this.realChannel && node.index === 0 && !node.db.getChannelKey()) {
      const { channelKey, sealed } = this.realChannel;
      node.db.setChannelKey(channelKey.publicKey, sealed);
      node.db.setChannel(1, channelKey.publicKey, this.now);
    }
    // What the node loads at start from its database (the real store's load, on the simulated clock).
    const loaded = node.db.load(this.now);
    this.recording?.push(structuredClone({ node: node.index, start: { config, loaded } }));
    const gen = ++node.gen;
    const alive = () => node.gen === gen;
    node.state = initState(config, loaded);
    node.nextConn = 1;
    const sig = `sim:${this.aliases.get(node.key)}`;
    const timers: Timers = {
      set: (fn, ms) => {
        const h = { off: false };
        this.at(this.now + ms, () => !h.off && alive() && fn());
        return h;
      },
      clear: (h) => void ((h as { off: boolean }).off = true),
    };
    const signer: FrameSigner = {
      signatures: 0,
      sign: () => Promise.resolve(sig),
      text: (f, sign) => Promise.resolve(serializeEnvelope(sign ? { ...f, sig } : f)),
      // Simulated signatures are instant: every frame can take the executor's direct path.
      textNow: (f, sign) => serializeEnvelope(sign ? { ...f, sig } : f),
    };
    // The node's own clock part (lib/net/clock.ts): one timer for the reducer's next deadline, no period.
    const clock = new DeadlineClock(timers, () => this.now, (at) => {
      if (!alive()) return;
      this.step(node, { kind: "tick", now: at });
      if (node.state) clock.arm(nextDeadline(node.state));
    });
    node.ex = createExecutor({
      state: node.state,
      store: this.storeOf(node),
      transport: this.transportOf(node, alive),
      // Never used: the signer, the verifier and the channel key are simulated (see channelKeysOf).
      key: null as unknown as PrivateKey,
      secret: "",
      channelKey: null,
      limits: node.state.config.limits,
      log: new Logger(
        "error",
        (line) => {
          // An injected store failure is logged as the real one is (store.write_failed); anything else is a bug.
          if (!line.includes(INJECTED)) this.violations.push(`node ${node.index} logged: ${line}`);
        },
        () => this.now,
      ),
      counters: node.counters,
      onStoreFailed: (e) => {
        if (!String(e).includes(INJECTED)) {
          return void this.violations.push(`node ${node.index}: store write failed: ${e}`);
        }
        // Crash-only, as startNode does: the node stops, and is started again from its database.
        this.storeFailures++;
        this.at(this.now, () => {
          if (!alive()) return;
          this.crash(node);
          this.at(this.now + 200 + this.faultRng.int(1800), () => node.state ?? this.start(node));
        });
      },
      now: () => this.now,
      readSoftware: (url) =>
        new Promise((resolve) => {
          // /.well-known/socp: our nodes say socp-deno/…; a foreign server has none.
          const host = /^http:\/\/([^:/]+)/.exec(url)?.[1];
          const ours = this.nodes.some((n) => n.host === host);
          this.at(this.now + 5, () => resolve(ours ? "socp-deno/sim" : ""));
        }),
      timers,
      signer,
      // A small per-turn budget, so that the simulation also runs effects held back to later turns.
      turnBytes: this.turnBytes,
      channelKeys: (dispatch, write) =>
        this.realChannel
          ? this.realChannelKeysOf(node, alive, dispatch, write)
          : this.channelKeysOf(node, alive, dispatch, write),
      digest: (text) => Promise.resolve(sha256Hex(text)),
      verify: (key, _payload, s) => Promise.resolve(s === `sim:${this.aliases.get(key)}`),
      fresh: () => `sim-fresh-${this.freshIds++}`,
      // Envelope ids from a counter, not crypto.randomUUID (a same-seed run must put the same frames on the wire).
      frameId: () => `sim-frame-${this.frameIds++}`,
      onStep: (ev, step) => {
        if (!alive()) return;
        this.recording?.push(structuredClone({ node: node.index, event: ev, effects: step.effects }));
        node.state = step.state;
        clock.arm(nextDeadline(step.state));
        // The last hop of a DM this run decided: it is in the shell until it leaves its socket.
        for (const fx of step.effects) {
          if (fx.kind === "send" && fx.frame.type === "USER_DELIVER") {
            const id = dmIdOf((fx.frame.payload as { ciphertext?: unknown }).ciphertext);
            if (id) this.inShell.set(id, node.index);
          }
        }
      },
    });
    this.step(node, { kind: "started", now: this.now, host: node.host, port: node.port });
    if (node.state) clock.arm(nextDeadline(node.state));
  }

  /**
   * Crash a node: state lost, store kept. Frames it already sent still arrive (the kernel flushes a dead
   * process's sockets before closing them); then its connections close.
   */
  crash(node: SimNode): void {
    if (!node.state) return;
    node.state = null;
    node.gen++; // its timers and sockets are dead from now on
    for (const [id, at] of this.inShell) {
      if (at === node.index) {
        this.inShell.delete(id);
        this.lostInCrash.add(id);
      }
    }
    node.ex?.stop();
    node.ex = null;
    for (const pipe of [...node.pipes.values()]) {
      this.at(Math.max(this.now, ...pipe.lastAt) + 1, () => this.breakPipe(pipe));
    }
    node.pipes.clear();
  }

  private step(node: SimNode, ev: Event): void {
    node.ex?.dispatch(ev);
  }

  /**
   * The node's durable store, as the executor writes and reads it: the real {@linkcode Store}, with a write or a
   * read that fails now and then when the faults say so (before it changes anything, as a failed SQLite
   * statement does).
   */
  private storeOf(node: SimNode): StoreLike {
    const db = node.db;
    const fail = (name: string, a: unknown[]) => {
      this.failedWrites.push(`${this.now} node ${node.index} ${name}(${JSON.stringify(a).slice(0, 200)})`);
      throw new Error(INJECTED);
    };
    const w = <A extends unknown[]>(f: (...a: A) => void) => (...a: A) => {
      if (this.faults.storeFail && this.faultRng.chance(this.faults.storeFail)) fail(f.name, a);
      f.apply(db, a);
    };
    const r = <A extends unknown[], R>(f: (...a: A) => R) => (...a: A): R => {
      if (this.faults.readFail && this.readFaultRng.chance(this.faults.readFail)) {
        this.failedReads++;
        fail(f.name, a);
      }
      return f.apply(db, a);
    };
    return {
      tx: (fn) => db.tx(fn),
      upsertUser: w(db.upsertUser),
      pinServer: w(db.pinServer),
      setServerId: w(db.setServerId),
      setHome: w(db.setHome),
      enqueue: w(db.enqueue),
      queuedIds: r(db.queuedIds),
      storedFrames: r(db.storedFrames),
      dequeue: w(db.dequeue),
      addOutbox: w(db.addOutbox),
      outboxIds: r(db.outboxIds),
      ackOutbox: w(db.ackOutbox),
      clearOutbox: w(db.clearOutbox),
      deleteOutbox: w(db.deleteOutbox),
      acceptRef: w(db.acceptRef),
      pinUser: w(db.pinUser),
      // The store prunes expired keys against its clock: the simulated one.
      addSeen: w((entries: [string, number][]) => db.addSeen(entries, this.now)),
      setChannel: w(db.setChannel),
      addMember: w(db.addMember),
      setChannelKey: w(db.setChannelKey),
    };
  }

  /** The real channel-key holder, its crypto run to completion between jobs (see realSettle). */
  private realChannelKeysOf(
    node: SimNode,
    alive: () => boolean,
    dispatch: (ev: Event) => void,
    write: Write,
  ): ChannelKeys {
    const rc = this.realChannel!;
    const held = node.db.getChannelKey()?.creatorPub === rc.channelKey.publicKey ? rc.channelKey : null;
    const adopting: { event?: Event; finish: () => void }[] = [];
    const holder = new ChannelKeyHolder({
      key: rc.privateKeys.get(node.key)!,
      secret: rc.secret,
      store: node.db,
      write,
      // The holder's verdict (channelReady, channelFailed) waits for the run loop to hand it on.
      dispatch: (ev) => {
        const a = adopting.shift();
        if (!a) return void this.violations.push(`node ${node.index}: channel event ${ev.kind} out of turn`);
        a.event = ev;
        a.finish();
      },
      log: new Logger(
        "error",
        (line) => this.violations.push(`node ${node.index} logged: ${line}`),
        () => this.now,
      ),
      now: () => this.now,
    }, held);
    return {
      pending: () => holder.pending(),
      started: () => holder.started(),
      create: () => this.violations.push(`node ${node.index} was asked to create a channel key`),
      adopt: (version, creatorPub, wrappedKey) => {
        let finish!: () => void;
        const rec: { event?: Event; finish: () => void } = {
          finish: () => {},
        };
        const done = new Promise<void>((r) => finish = r);
        rec.finish = finish;
        adopting.push(rec);
        this.realOps.push({ done, release: () => rec.event && alive() && dispatch(rec.event) });
        holder.adopt(version, creatorPub, wrappedKey);
      },
      seal: (frame, seal) =>
        new Promise<boolean>((resolve, reject) => {
          const p = holder.seal(frame, seal);
          this.realOps.push({ done: p.catch(() => {}), release: () => void p.then(resolve, reject) });
        }),
    };
  }

  /** Simulated channel crypto: the wrap names the channel key it carries and whom it is for. */
  private channelKeysOf(
    node: SimNode,
    alive: () => boolean,
    dispatch: (ev: Event) => void,
    write: Write,
  ): ChannelKeys {
    const ready = (version: number, creatorPub: string) =>
      this.at(this.now + 5, () => {
        if (!alive()) return;
        // Through the executor's crash-only writes, as the real holder keeps its key.
        const kept = write(() => {
          node.db.setChannelKey(creatorPub, SIM_SEALED);
          node.db.setChannel(version, creatorPub, this.now);
        });
        if (kept) dispatch({ kind: "channelReady", now: this.now, version, creatorPub });
      });
    return {
      pending: () => undefined,
      started: () => {},
      create: () => ready(1, node.key),
      adopt: (version, creatorPub) => ready(version, creatorPub),
      seal: (frame, seal) => {
        const p = structuredClone(frame.payload) as Record<string, unknown>;
        const wrap = `wrap:${node.db.getChannelKey()?.creatorPub.slice(-12)}:for:${seal.forKey.slice(-12)}`;
        if (seal.kind === "welcome") (p.public_channel as Record<string, unknown>).wrapped_key = wrap;
        else if (seal.kind === "updated") (p.wraps as Record<string, unknown>[])[0].wrapped_key = wrap;
        else {
          (p.shares as Record<string, unknown>[])[0].wrapped_public_channel_key = wrap;
          p.content_sig = "channel-sig";
        }
        frame.payload = p as typeof frame.payload;
        return Promise.resolve(true);
      },
    };
  }

  /** The simulated network as the node's transport: dials reach other nodes and foreign servers by host. */
  private transportOf(node: SimNode, alive: () => boolean): Transport {
    return {
      listen: () => {
        throw new Error("the simulation accepts connections through Sim.connect and dials");
      },
      dial: (url, _timeoutMs, on) => {
        if (!alive()) return;
        const fm = /^ws:\/\/f(\d+):\d+$/.exec(url);
        if (fm) return this.dialForeign(node, alive, on, this.foreign[Number(fm[1])]);
        const m = /^ws:\/\/n(\d+):\d+$/.exec(url);
        const target = m ? this.nodes[Number(m[1])] : undefined;
        if (!target?.ex) return on.onFail("refused");
        const ca = node.nextConn++;
        const cb = target.nextConn++;
        const pipe: Pipe = { a: null!, b: null!, open: true, lastAt: [0, 0] };
        const tgen = target.gen;
        const sa = new SimSocket(this, pipe, 0, alive);
        const sb = new SimSocket(this, pipe, 1, () => target.gen === tgen);
        pipe.a = { kind: "node", node, conn: ca, sock: sa };
        pipe.b = { kind: "node", node: target, conn: cb, sock: sb };
        node.pipes.set(ca, pipe);
        target.pipes.set(cb, pipe);
        target.ex.upgrade(node.host, accepting(sb), 30);
        queueMicrotask(() => alive() && on.onOpen(sa));
      },
    };
  }

  private dialForeign(
    node: SimNode,
    alive: () => boolean,
    on: DialHandlers,
    target: ForeignNode | undefined,
  ): void {
    if (!target?.up) return on.onFail("refused");
    const ca = node.nextConn++;
    const cb = target.nextConn++;
    const pipe: Pipe = {
      a: null!,
      b: { kind: "foreign", node: target, conn: cb },
      open: true,
      lastAt: [0, 0],
    };
    const sa = new SimSocket(this, pipe, 0, alive);
    pipe.a = { kind: "node", node, conn: ca, sock: sa };
    node.pipes.set(ca, pipe);
    target.pipes.set(cb, pipe);
    target.accepted(cb);
    queueMicrotask(() => alive() && on.onOpen(sa));
  }

  /** A foreign server dials one of our nodes (by host) and JOINs it. */
  dialFromForeign(f: ForeignNode, host: string): void {
    const target = this.nodes.find((n) => n.host === host);
    if (!target?.ex || !f.up) return;
    const ca = f.nextConn++;
    const cb = target.nextConn++;
    const pipe: Pipe = { a: { kind: "foreign", node: f, conn: ca }, b: null!, open: true, lastAt: [0, 0] };
    const tgen = target.gen;
    const sb = new SimSocket(this, pipe, 1, () => target.gen === tgen);
    pipe.b = { kind: "node", node: target, conn: cb, sock: sb };
    f.pipes.set(ca, pipe);
    target.pipes.set(cb, pipe);
    target.ex.upgrade(f.host, accepting(sb), 30);
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
  /** The largest send buffer a node's socket had (bytes handed over and not yet read by the peer). */
  maxBuffered = 0;

  /** Drain each socket on a tick of its own (how seed 302's run was found; it shifts every event after). */
  drainEachSocket = false;
  /** Sockets with frames to drain at the next network tick, in the order they asked. */
  private readonly toDrain = new Set<SimSocket>();

  /**
   * Drain a node socket's buffer at the next network tick. One job drains every such socket every
   * {@linkcode DRAIN_MS} while any has frames waiting (not one job per socket: fewer turns to settle).
   */
  drainLater(sock: SimSocket): void {
    this.maxBuffered = Math.max(this.maxBuffered, sock.bufferedAmount);
    if (sock.draining) return;
    sock.draining = true;
    if (this.drainEachSocket) return void this.at(this.now + DRAIN_MS, () => this.drainSocket(sock));
    if (this.toDrain.size === 0) {
      this.at(this.now + DRAIN_MS, () => {
        const socks = [...this.toDrain];
        this.toDrain.clear();
        for (const x of socks) this.drainSocket(x);
      });
    }
    this.toDrain.add(sock);
  }

  /** One network tick for a socket: the peer reads up to {@linkcode READ_BYTES} (nothing while it stalls). */
  private drainSocket(sock: SimSocket): void {
    sock.draining = false;
    if (!sock.pipe.open || !sock.alive()) return this.dropBuffer(sock);
    const peer = sock.dir === 0 ? sock.pipe.b : sock.pipe.a;
    const stalled = (peer.kind === "user" && !peer.user.reading) ||
      (peer.kind === "client" && !peer.client.reading);
    let room = stalled ? 0 : READ_BYTES;
    while (room > 0 && sock.buffer.length > 0) {
      const text = sock.buffer.shift()!;
      sock.bufferedAmount -= text.length;
      room -= text.length;
      this.transmit(sock.pipe, sock.dir, text);
    }
    if (sock.buffer.length > 0) {
      if (room > 0 || !stalled) this.drainLater(sock);
      // else: the user reads again later (resume), and drains it then.
    } else if (sock.closing) this.closePipe(sock.pipe);
  }

  /** Frames left in a socket's buffer when its connection or its process ended: they never leave. */
  private dropBuffer(sock: SimSocket): void {
    const to = sock.dir === 0 ? sock.pipe.b : sock.pipe.a;
    for (const text of sock.buffer.splice(0)) this.lostInFlight(to, text);
    sock.bufferedAmount = 0;
  }

  /** A client user stops reading its connection for `ms`. */
  stallClient(c: ClientUser, ms: number): void {
    c.reading = false;
    this.at(this.now + ms, () => {
      c.reading = true;
      const end = c.pipe?.b;
      if (end?.kind === "node") this.drainLater(end.sock);
    });
  }

  /** A user stops reading its connection for `ms` (its node's socket buffer fills up). */
  stall(user: SimUser, ms: number): void {
    user.reading = false;
    this.at(this.now + ms, () => {
      user.reading = true;
      const end = user.pipe?.b;
      if (end?.kind === "node") this.drainLater(end.sock);
    });
  }

  transmit(pipe: Pipe, dir: 0 | 1, wire: Envelope | string): void {
    const text = typeof wire === "string" ? wire : serializeEnvelope(wire);
    // The type without parsing the whole text (the envelope's `type` comes before its payload).
    const type = typeof wire === "string" ? /"type":"([A-Z_]+)"/.exec(wire)?.[1] ?? "" : wire.type;
    const to = dir === 0 ? pipe.b : pipe.a;
    const between = pipe.a.kind !== "user" && pipe.b.kind !== "user" && pipe.a.kind !== "client";
    this.trace?.push(`${this.now} ${dir} ${text}`);
    if (type === "USER_DELIVER") {
      const id = /"ct\.(dm-[^"~]+)/.exec(text)?.[1];
      if (id) this.inShell.delete(id);
    }
    if (to.kind === "foreign" && (type === "SERVER_DELIVER" || type === "ERROR")) {
      const frame = typeof wire === "string" ? JSON.parse(wire) as Envelope : wire;
      if (type === "SERVER_DELIVER") {
        // PROFILE §15: a server that does not speak the ACK extension gets each DM once; at most one more copy
        // may leave when the DM was sent before its /.well-known/socp answered and the link broke in between.
        const ct = (frame.payload as { ciphertext: string }).ciphertext;
        const n = (this.sentToForeign.get(ct) ?? 0) + 1;
        this.sentToForeign.set(ct, n);
        if (n > 2) this.violations.push(`${ct} sent ${n} times to the foreign server (it never ACKs)`);
      } else {
        const p = frame.payload as { code: string; detail?: string };
        if (p.code !== "USER_NOT_FOUND") {
          this.violations.push(`ERROR ${p.code} to the foreign server: ${p.detail ?? ""}`);
        }
      }
    }
    if (between) this.serverFrames.set(type, (this.serverFrames.get(type) ?? 0) + 1);
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

  /**
   * DMs whose USER_DELIVER a node decided and had not yet written to the wire (waiting in its executor's backlog,
   * its connection's outbound chain or its socket buffer), by DM id: the node that holds it.
   */
  private readonly inShell = new Map<string, number>();
  /**
   * DMs lost because the node holding their last hop crashed (or stopped after a failed write) before the frame
   * left: the node had accepted them (ACK upstream) and they were on their way to a live connection, in memory only.
   */
  readonly lostInCrash = new Set<string>();

  /**
   * When set, a DM that reaches its recipient again, unchanged, is left to the client's dedupe (clients keep a
   * seen list by sender and ciphertext, PROFILE §16) and recorded in {@linkcode wireDuplicates} instead of being a
   * violation. Store-failure runs set it: a node that stops between two writes of one step (the DM queued, its
   * msg_ref not yet remembered) takes the sender's resend as new after its restart, and one that stops after
   * handing queued rows to a user but before deleting them hands them over again.
   */
  dedupeAtClient = false;
  /** DMs delivered more than once (only recorded when {@linkcode dedupeAtClient}). */
  readonly wireDuplicates = new Set<string>();

  /** DMs whose USER_DELIVER was in flight when the recipient's connection closed (the last hop's inherent race). */
  readonly lostAtLastHop = new Set<string>();

  private lostInFlight(to: Endpoint, text: string): void {
    const f = to.kind === "foreign" && text.includes('"SERVER_DELIVER"')
      ? /"ct\.(dm-[^"~]+)/.exec(text)
      : null;
    if (f) this.lostHandedToForeign.add(f[1]);
    const m = (to.kind === "user" || to.kind === "client") && text.includes('"USER_DELIVER"')
      ? /"ct\.(dm-[^"~]+)/.exec(text)
      : null;
    if (m) this.lostAtLastHop.add(m[1]);
  }

  private arrive(to: Endpoint, text: string): void {
    if (to.kind === "user") return this.userReceives(to.user, text);
    if (to.kind === "client") return to.client.frame(text);
    if (to.kind === "foreign") return to.node.receive(to.conn, text);
    if (to.sock.alive()) to.sock.onMessage(text);
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
        this.dropBuffer(end.sock);
        if (end.node.pipes.get(end.conn) !== pipe) continue;
        end.node.pipes.delete(end.conn);
        if (end.sock.alive()) end.sock.onClose();
      } else if (end.kind === "foreign") {
        if (end.node.pipes.get(end.conn) === pipe) end.node.closed(end.conn);
      } else if (end.kind === "client") {
        if (end.client.pipe === pipe) {
          end.client.pipe = null;
          end.client.node = null;
          end.client.closed();
        }
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
      reading: true,
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
    if (user.pipe || !node.ex) return;
    const conn = node.nextConn++;
    const pipe: Pipe = { a: { kind: "user", user }, b: null!, open: true, lastAt: [0, 0] };
    const gen = node.gen;
    const sock = new SimSocket(this, pipe, 1, () => node.gen === gen);
    pipe.b = { kind: "node", node, conn, sock };
    node.pipes.set(conn, pipe);
    user.pipe = pipe;
    user.node = node;
    node.ex.upgrade(`u-${user.userId}`, accepting(sock), 30);
    // Signed, with a payload ts and a nonce, as our clients say hello (PROFILE §16 proof of possession).
    this.transmit(pipe, 0, {
      type: "USER_HELLO",
      from: user.userId,
      to: "",
      ts: this.now,
      payload: {
        client: "sim",
        pubkey: user.key,
        enc_pubkey: user.key,
        ts: this.now,
        nonce: `nonce-${++this.hellos}-${this.now}`, // not from the rng: seeds replay as before
      },
      sig: `sim:${this.aliases.get(user.key)}`,
    } as Envelope);
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

  // --- users driven by the client core ------------------------------------------------------------------------
  /** Users whose protocol side is the real `ClientCore` (see client_user.ts). */
  readonly clients: ClientUser[] = [];
  /** DMs the client users sent (their text is the DM id). */
  readonly clientDms = new Map<string, { from: ClientUser; to: ClientUser; messageId: string }>();

  /** The alias of a key (its simulated signature is `sim:<alias>`). */
  alias(key: string): string | undefined {
    const a = this.aliases.get(key);
    return a === undefined ? undefined : String(a);
  }

  /** Add a user driven by `ClientCore`, homed on `home`; every client knows every other (earlier sessions). */
  addClient(keyIndex: number, home: SimNode): ClientUser {
    const n = this.clients.length;
    const c = new ClientUser(
      {
        now: () => this.now,
        alias: (k) => this.alias(k),
        send: (u, text) => u.pipe?.open && this.transmit(u.pipe, 0, text),
      },
      `cccccccc-0000-4000-8000-${String(n).padStart(12, "0")}`,
      this.keys[keyIndex],
    );
    c.home = home;
    this.clients.push(c);
    for (const x of this.clients) x.know(this.clients.map((y) => ({ userId: y.userId, key: y.key })));
    if (n === 0) {
      // The shell's clock for the cores: the hello rule and the snapshot wait.
      const tick = () => {
        for (const x of this.clients) if (x.pipe) x.tick();
        this.at(this.now + 250, tick);
      };
      this.at(this.now + 250, tick);
    }
    return c;
  }

  /** Connect a client user to its home node; the core says hello once the socket is open. */
  connectClient(c: ClientUser): void {
    const node = c.home!;
    if (c.pipe || !node.ex) return;
    const conn = node.nextConn++;
    const pipe: Pipe = { a: { kind: "client", client: c }, b: null!, open: true, lastAt: [0, 0] };
    const gen = node.gen;
    const sock = new SimSocket(this, pipe, 1, () => node.gen === gen);
    pipe.b = { kind: "node", node, conn, sock };
    node.pipes.set(conn, pipe);
    c.pipe = pipe;
    c.node = node;
    node.ex.upgrade(`c-${c.userId}`, accepting(sock), 30);
    c.opened(`nonce-${++this.hellos}-${this.now}`);
  }

  /** A client user sends a DM (its text is a fresh DM id); null when the core would not. */
  clientDm(from: ClientUser, to: ClientUser): string | null {
    const id = `dm-${this.seed}-c${this.dmSeq++}`;
    const m = from.tell(to.userId, id);
    if (!m) return null;
    this.clientDms.set(id, { from, to, messageId: m.id });
    return id;
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
  dm(from: SimUser, to: SimUser, pad = 0): SentDm | null {
    if (!from.pipe || !from.online) return null;
    const id = `dm-${this.seed}-${this.dmSeq++}`;
    const dm: SentDm = {
      id,
      from: from.userId,
      to: to.userId,
      ts: this.now,
      // Padded when asked (a burst that fills a stalled reader's buffer): `~` and filler after the id.
      ciphertext: `ct.${id}` + (pad > 0 ? `~${"x".repeat(pad)}` : ""),
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
        const id = env.payload.ciphertext.slice(3).split("~")[0];
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
        if (n > 1 && this.dedupeAtClient) this.wireDuplicates.add(id);
        else if (n > 1) this.violations.push(`${id} delivered ${n} times to ${user.userId}`);
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
    for (const c of this.clients) {
      if (c.online && c.node?.state) m.set(c.userId, c.node.state.config.serverId);
    }
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

  /** Nodes whose count of queued frames per user differs from the rows in their store (checked when calm). */
  queueDrift(): string[] {
    const out: string[] = [];
    for (const n of this.nodes) {
      if (!n.state) continue;
      const rows = new Map(n.db.load(this.now).queued);
      const users = new Set([...n.state.queued.keys(), ...rows.keys()]);
      for (const u of users) {
        const counted = n.state.queued.get(u) ?? 0;
        const stored = rows.get(u) ?? 0;
        if (counted !== stored) {
          out.push(
            `node ${n.index}: ${stored} rows queued for ${u.slice(-3)} in the store, ${counted} counted`,
          );
        }
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
