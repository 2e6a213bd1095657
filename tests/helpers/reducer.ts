/** Helpers to drive the pure reducer in tests: build events, pick effects. */
import { initState, reduce } from "../../lib/core/reduce.ts";
import {
  type BootstrapEntry,
  DEFAULT_FEDERATION,
  DEFAULT_LIMITS,
  type Effect,
  endpointUrl,
  type Event,
  type NodeConfig,
  type State,
} from "../../lib/core/types.ts";
import { sha256HexSync as sha256Hex } from "../../lib/net/digest.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { type AnyEnvelope, parseFrame } from "../../lib/protocol/envelope.ts";
import { expectedKey } from "../../lib/core/verify.ts";
import { withoutFwdTs } from "../../lib/net/inbound.ts";

/** The digest the shell hands the reducer (inbound.ts): of the canonical payload, `fwd_ts` left out. */
function digestOf(payload: object): string {
  return sha256Hex("fwd_ts" in payload ? withoutFwdTs(payload) : canonicalJson(payload));
}

export const SERVER = "3f0e5f0a-8c1b-4b7e-9d2a-6a1f2c3b4d5e";
export const ALICE = "a11ce000-0000-4000-8000-000000000001";
export const BOB = "b0b00000-0000-4000-8000-000000000002";
export const CAROL = "ca201000-0000-4000-8000-000000000003";
export const T0 = 1_700_000_000_000;

export function config(over: Partial<NodeConfig> = {}): NodeConfig {
  return {
    serverId: SERVER,
    serverPub: "SERVER-PUB",
    serverPubPem: "SERVER-PUB-PEM",
    limits: { ...DEFAULT_LIMITS },
    federation: { ...DEFAULT_FEDERATION },
    labWeakKeys: false,
    labReplay: false,
    ...over,
  };
}

/** A config whose node joins through `bootstrap` (default timers). */
export function joining(bootstrap: BootstrapEntry[]): NodeConfig {
  return config({ federation: { ...DEFAULT_FEDERATION, bootstrap } });
}

/** A reducer under test with a log of every effect. */
export class Harness {
  state: State;
  now = T0;
  constructor(cfg: NodeConfig = config()) {
    this.state = initState(cfg);
  }
  step(ev: Event): Effect[] {
    const r = reduce(this.state, ev);
    this.state = r.state;
    return r.effects;
  }
  connect(conn: number, addr = "127.0.0.1"): Effect[] {
    return this.step({ kind: "connected", conn, addr, now: this.now });
  }
  /** Feed a frame (object or raw text) with a given signature check outcome. */
  frame(
    conn: number,
    f: Record<string, unknown> | string,
    sig: "valid" | "invalid" | "absent" = "absent",
    sigKey?: string,
  ): Effect[] {
    const parsed = parseFrame(typeof f === "string" ? f : JSON.stringify(f));
    const digest = parsed.ok ? digestOf(parsed.envelope.payload) : "";
    return this.step({
      kind: "frame",
      conn,
      now: this.now,
      parsed,
      digest,
      sig,
      sigKey,
      fresh: "fresh-id-" + this.now,
    });
  }
  /** Feed a frame as if its signature verified with the key the node expects for it (an honest peer). */
  signed(conn: number, f: Record<string, unknown>): Effect[] {
    const parsed = parseFrame(JSON.stringify({ sig: "SIG", ...f }));
    if (!parsed.ok) throw new Error(parsed.error.detail);
    const key = expectedKey(this.state, this.state.conns.get(conn), parsed.envelope);
    const digest = digestOf(parsed.envelope.payload);
    return this.step({
      kind: "frame",
      conn,
      now: this.now,
      parsed,
      digest,
      sig: "valid",
      sigKey: key,
      fresh: "fresh-id-" + this.now,
    });
  }
  private nonces = 0;
  /**
   * A USER_HELLO as our clients send it: signed with the presented key, with a fresh payload `ts` and a new
   * `nonce` (PROFILE §16 proof of possession). `unsignedHello` sends the deployed unsigned form instead.
   */
  /**
   * Started on 127.0.0.1:8765 with `server` (key `pubkey`, listening on 127.0.0.1:9000) linked on `conn`
   * (default 10): it joined us (SERVER_HELLO_JOIN), or linked with SERVER_HELLO_LINK when `link` is set; a local
   * user says hello on its own connection first when `user` is given.
   */
  linkedTo(
    server: string,
    pubkey: string,
    opts: { conn?: number; link?: boolean; user?: { conn: number; id: string; key: string } } = {},
  ): this {
    this.step({ kind: "started", now: this.now, host: "127.0.0.1", port: 8765 });
    if (opts.user) {
      this.connect(opts.user.conn);
      this.hello(opts.user.conn, opts.user.id, opts.user.key);
    }
    const conn = opts.conn ?? 10;
    this.connect(conn);
    this.signed(conn, {
      type: opts.link ? "SERVER_HELLO_LINK" : "SERVER_HELLO_JOIN",
      from: server,
      to: opts.link ? SERVER : "127.0.0.1:8765",
      ts: this.now,
      payload: { host: "127.0.0.1", port: 9000, pubkey },
    });
    return this;
  }

  hello(conn: number, user: string, pubkey: string, extra: Record<string, unknown> = {}): Effect[] {
    const frame = {
      type: "USER_HELLO",
      from: user,
      to: "",
      ts: this.now,
      payload: {
        client: "t",
        pubkey,
        enc_pubkey: pubkey,
        ts: this.now,
        nonce: `nonce-${String(++this.nonces).padStart(6, "0")}`,
        ...extra,
      },
      sig: "SIG",
    };
    return this.frame(conn, frame, "valid", String((frame.payload as { pubkey: string }).pubkey));
  }
  /** A deployed client's unsigned USER_HELLO (no sig, no ts, no nonce). */
  unsignedHello(conn: number, user: string, pubkey: string, extra: Record<string, unknown> = {}): Effect[] {
    return this.frame(conn, {
      type: "USER_HELLO",
      from: user,
      to: "",
      ts: this.now,
      payload: { client: "t", pubkey, enc_pubkey: pubkey, ...extra },
      sig: "",
    });
  }
}

/** The frames sent to `conn` (or all frames) in an effect list. */
export function sent(effects: Effect[], conn?: number): AnyEnvelope[] {
  return effects.flatMap((e) =>
    e.kind === "send" && (conn === undefined || e.conn === conn) ? [e.frame as AnyEnvelope] : []
  );
}

/** The close effects. */
export function closes(effects: Effect[]): { conn: number; code: number }[] {
  return effects.flatMap((e) => e.kind === "close" ? [{ conn: e.conn, code: e.code }] : []);
}

/** The error codes sent. */
export function errors(effects: Effect[]): string[] {
  return sent(effects).flatMap((f) => f.type === "ERROR" ? [f.payload.code] : []);
}

/** The dial effects. */
export function dials(effects: Effect[]): { token: number; url: string; afterMs: number }[] {
  return effects.flatMap((e) =>
    e.kind === "dial" ? [{ token: e.token, url: endpointUrl(e), afterMs: e.afterMs }] : []
  );
}

/** The persist effects' ops. */
export function persists(effects: Effect[]): string[] {
  return effects.flatMap((e) => e.kind === "persist" ? [e.op.op] : []);
}
