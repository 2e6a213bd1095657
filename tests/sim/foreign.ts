/**
 * A "foreign server" for the simulation: not our reducer but a small scripted server that behaves like the
 * deployed implementations of issue 8 (PROFILE §15), all at once:
 * - it relays every broadcast frame (presence, channel, announces, heartbeats) to every link, the sender's
 *   included, so our own frames come back to us;
 * - it sends `PUBLIC_CHANNEL_UPDATED {version, added}` and KEY_SHARE entries with `wrapped`;
 * - it announces `SERVER_ANNOUNCE {server_id, user_locations}` without an address;
 * - it never sends HEARTBEAT (it would keep links alive with WebSocket pings, which the simulation does not model);
 * - it accepts only SERVER_HELLO_JOIN (a LINK gets ERROR and a close);
 * - it never ACKs, has no /.well-known/socp software, and signs its frames as `from:"key1"` / `"server"`;
 * - it answers a user's hello with `ACK {msg_ref:"USER_HELLO_OK"}`, delivers DMs (USER_DELIVER with `orig_ts`),
 *   queues them for its registered users who are offline, and drops what it cannot route.
 */
import type { Envelope } from "../../lib/protocol/envelope.ts";
import type { Pipe, Sim } from "./sim.ts";

// deno-lint-ignore no-explicit-any
type Frame = Envelope<any> & { payload: any };

/** A scripted foreign server in the simulation. */
export class ForeignNode {
  readonly foreign = true;
  readonly host: string;
  readonly port: number;
  readonly id: string;
  up = true;
  readonly pipes = new Map<number, Pipe>();
  nextConn = 1;
  /** Server links by connection: the peer's id (known once the JOIN handshake is done). */
  readonly links = new Map<number, string>();
  /** Connections we dialed with JOIN, waiting for the welcome. */
  private readonly joining = new Set<number>();
  private readonly userConns = new Map<number, string>();
  /** Local users online: id -> connection. */
  readonly users = new Map<string, number>();
  private readonly registered = new Map<string, string>();
  private readonly queue = new Map<string, Frame[]>();
  /** Remote users and their servers, as this server believes. */
  readonly presence = new Map<string, string>();
  private readonly presenceTs = new Map<string, number>();
  private readonly delivered = new Set<string>();
  private channelVersion = 1;

  constructor(
    private readonly sim: Sim,
    index: number,
    readonly key: string,
    private readonly alias: string,
  ) {
    this.host = `f${index}`;
    this.port = 2000 + index;
    this.id = `f0f0f0f0-0000-4000-8000-${String(index).padStart(12, "0")}`;
  }

  private send(conn: number, frame: Frame, sign = true): void {
    const pipe = this.pipes.get(conn);
    if (!pipe?.open) return;
    const f = { ...frame, sig: sign ? `sim:${this.alias}` : frame.sig ?? "" };
    this.sim.transmit(pipe, pipe.a.kind === "foreign" && pipe.a.conn === conn ? 0 : 1, f);
  }

  private frame(type: string, from: string, payload: Record<string, unknown>, ts = this.sim.now): Frame {
    return { type, from, to: "*", ts, payload } as Frame;
  }

  private toLinks(frame: Frame, sign: boolean): void {
    for (const conn of this.links.keys()) this.send(conn, frame, sign);
  }

  private toUsers(frame: Frame, except?: string): void {
    for (const [u, conn] of this.users) if (u !== except) this.send(conn, frame, false);
  }

  private linkedTo(serverId: string): boolean {
    return [...this.links.values()].includes(serverId);
  }

  /** Open a connection to one of our nodes and JOIN it (the only hello this server speaks). */
  dialed(conn: number, host: string): void {
    this.joining.add(conn);
    const join = this.frame("SERVER_HELLO_JOIN", this.id, {
      host: this.host,
      port: this.port,
      pubkey: this.key,
    });
    this.send(conn, { ...join, to: host });
  }

  /** True while a JOIN to `host` is open or waiting for its welcome (one dial per server at a time). */
  dialing(host: string): boolean {
    return [...this.joining].some((c) => {
      const p = this.pipes.get(c);
      const other = p?.a.kind === "foreign" && p.a.conn === c ? p.b : p?.a;
      return other?.kind === "node" && other.node.host === host;
    });
  }

  /** A connection opened to us (a server dialing, or a user). */
  accepted(conn: number, user?: string): void {
    if (user) this.userConns.set(conn, user);
  }

  receive(conn: number, text: string): void {
    if (!this.up) return;
    let f: Frame;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if (this.userConns.has(conn)) return this.fromUser(conn, f);
    if (f.type === "SERVER_HELLO_LINK" && !this.links.has(conn)) {
      this.send(conn, {
        ...this.frame("ERROR", "server", {
          code: "UNKNOWN_TYPE",
          detail: "Unexpected initial message: SERVER_HELLO_LINK",
        }),
        to: f.from,
      }, false);
      const pipe = this.pipes.get(conn); // gone already when the ERROR itself broke the link
      return pipe && this.sim.closePipe(pipe);
    }
    if (f.type === "SERVER_HELLO_JOIN" && !this.links.has(conn)) {
      this.send(
        conn,
        this.frame("SERVER_WELCOME", this.id, {
          host: this.host,
          port: this.port,
          pubkey: this.key,
          role: "peer",
        }),
      );
      return this.linkUp(conn, f.from);
    }
    if (f.type === "SERVER_WELCOME" && this.joining.delete(conn)) {
      this.linkUp(conn, f.from);
      // Join every server the introducer lists (JOIN is all this server speaks).
      for (const s of (f.payload.servers ?? []) as { server_id: string; host: string }[]) {
        if (s.server_id !== f.from && !this.linkedTo(s.server_id) && !this.dialing(s.host)) {
          this.sim.dialFromForeign(this, s.host);
        }
      }
      return;
    }
    if (!this.links.has(conn)) return;
    // Relay every broadcast frame to every link, the sender's included (our frames come back as echoes).
    // Frames a user originated are re-signed by the forwarder, as servers do (PROFILE §3).
    if (f.type !== "SERVER_DELIVER" && f.type !== "ERROR" && f.type !== "ACK") {
      this.toLinks(f, f.type === "MSG_PUBLIC_CHANNEL");
    }
    const p = f.payload;
    switch (f.type) {
      case "USER_ADVERTISE":
        if (!this.linkedTo(p.server_id) || f.ts < (this.presenceTs.get(p.user_id) ?? -Infinity)) return;
        if (this.users.has(p.user_id)) return;
        this.presenceTs.set(p.user_id, f.ts);
        this.presence.set(p.user_id, p.server_id);
        return this.toUsers(f);
      case "USER_REMOVE":
        if (this.presence.get(p.user_id) !== p.server_id) return;
        if (f.ts < (this.presenceTs.get(p.user_id) ?? -Infinity)) return;
        this.presenceTs.set(p.user_id, f.ts);
        this.presence.delete(p.user_id);
        return this.toUsers(f);
      case "SERVER_DELIVER":
        return this.deliverLocal(p.user_id, {
          ciphertext: p.ciphertext,
          sender: p.sender,
          sender_pub: p.sender_pub,
          content_sig: p.content_sig,
        }, p.orig_ts ?? f.ts);
      case "MSG_PUBLIC_CHANNEL": {
        const k = `pub|${f.from}|${p.ciphertext}`;
        if (this.delivered.has(k)) return;
        this.delivered.add(k);
        return this.toUsers(f, f.from);
      }
      default:
        return; // HEARTBEAT, ERROR, channel frames, announces: nothing to do (never an ACK)
    }
  }

  private linkUp(conn: number, serverId: string): void {
    if (!this.pipes.get(conn)?.open) return; // the welcome itself broke the connection
    this.links.set(conn, serverId);
    const locals = [...this.users.keys()];
    for (const u of locals) this.send(conn, this.advert(u));
    this.send(
      conn,
      this.frame("SERVER_ANNOUNCE", "server", {
        server_id: this.id,
        user_locations: Object.fromEntries(locals.map((u) => [u, this.id])),
      }),
    );
    this.send(
      conn,
      this.frame("PUBLIC_CHANNEL_UPDATED", "key1", { version: this.channelVersion, added: locals }),
    );
  }

  private advert(userId: string): Frame {
    return this.frame("USER_ADVERTISE", "key1", {
      user_id: userId,
      server_id: this.id,
      meta: { display_name: userId.slice(-3) },
      pubkey: this.registered.get(userId) ?? "",
    });
  }

  private deliverLocal(userId: string, dm: Record<string, string>, ts: number): void {
    const k = `dm|${dm.sender}|${dm.ciphertext}`;
    if (this.delivered.has(k)) return; // this server's own dedupe
    const deliver = { ...this.frame("USER_DELIVER", this.id, dm, ts), to: userId };
    const conn = this.users.get(userId);
    if (conn !== undefined) {
      this.delivered.add(k);
      return this.send(conn, deliver, false);
    }
    if (this.registered.has(userId)) {
      this.delivered.add(k);
      this.queue.set(userId, [...(this.queue.get(userId) ?? []), deliver]);
    }
  }

  private fromUser(conn: number, f: Frame): void {
    const p = f.payload;
    switch (f.type) {
      case "USER_HELLO": {
        const u = f.from;
        this.userConns.set(conn, u);
        this.users.set(u, conn);
        this.registered.set(u, p.pubkey);
        this.presence.delete(u);
        this.presenceTs.set(u, this.sim.now);
        this.send(conn, {
          ...this.frame("ACK", this.id, { msg_ref: "USER_HELLO_OK", server_pub: this.key }),
          to: u,
        });
        for (const other of this.users.keys()) if (other !== u) this.send(conn, this.advert(other));
        for (const [other, server] of this.presence) {
          this.send(conn, this.frame("USER_ADVERTISE", server, { user_id: other, server_id: server }), false);
        }
        const ad = this.advert(u);
        this.toUsers(ad);
        this.toLinks(ad, true);
        this.channelVersion++;
        const upd = this.frame("PUBLIC_CHANNEL_UPDATED", "key1", {
          version: this.channelVersion,
          added: [u],
        });
        this.toLinks(upd, true);
        this.toLinks(
          this.frame("PUBLIC_CHANNEL_KEY_SHARE", "key1", {
            shares: [{ member: u, wrapped: "wrapped-elsewhere" }],
            creator_pub: this.key,
            content_sig: "",
          }),
          true,
        );
        for (const q of this.queue.get(u) ?? []) this.send(conn, q, false);
        this.queue.delete(u);
        return;
      }
      case "MSG_DIRECT": {
        const dm = {
          ciphertext: p.ciphertext,
          sender: f.from,
          sender_pub: p.sender_pub,
          content_sig: p.content_sig,
        };
        if (this.users.has(f.to) || (this.registered.has(f.to) && !this.presence.has(f.to))) {
          return this.deliverLocal(f.to, dm, f.ts);
        }
        const server = this.presence.get(f.to);
        const link = [...this.links].find(([, s]) => s === server)?.[0];
        if (link === undefined) return; // unknown or unreachable: dropped (no outbox here)
        this.send(link, {
          ...this.frame("SERVER_DELIVER", "key1", { user_id: f.to, ...dm }, f.ts),
          to: server!,
        });
        return;
      }
      case "MSG_PUBLIC_CHANNEL":
        this.toUsers(f, f.from);
        this.toLinks(f, true);
        return;
    }
  }

  /** A connection closed. */
  closed(conn: number): void {
    this.pipes.delete(conn);
    this.joining.delete(conn);
    const user = this.userConns.get(conn);
    if (user !== undefined) {
      this.userConns.delete(conn);
      if (this.users.get(user) !== conn) return;
      this.users.delete(user);
      this.presenceTs.set(user, this.sim.now);
      const rm = this.frame("USER_REMOVE", "key1", { user_id: user, server_id: this.id });
      this.toUsers(rm);
      this.toLinks(rm, true);
      return;
    }
    const server = this.links.get(conn);
    this.links.delete(conn);
    if (server === undefined || this.linkedTo(server)) return;
    for (const [u, s] of [...this.presence]) {
      if (s !== server) continue;
      this.presence.delete(u);
      this.toUsers(this.frame("USER_REMOVE", this.id, { user_id: u, server_id: server }));
    }
  }
}
