/**
 * The client library: connects to a node, says hello (signed, with `ts` and `nonce`), keeps a presence
 * directory from USER_ADVERTISE / USER_REMOVE, sends end-to-end encrypted DMs, and verifies what arrives
 * (server `sig`, `content_sig` in every accepted form, `sender_pub` against the key presence announced).
 * The terminal chat, the tests and the web client use it.
 *
 * @example
 * ```ts
 * const c = await SocpClient.connect("ws://localhost:8765", { userId, key, displayName: "alice" });
 * c.onEvent = (e) => { if (e.kind === "dm") console.log(e.fromName, e.text); };
 * await c.tell("bob", "hi");
 * ```
 * @module
 */
import { encryptTo, type PrivateKey, verifyAny } from "../crypto/rsa.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import { signaturePreimages } from "../protocol/canonical_json.ts";
import { type AnyEnvelope, type Envelope, parseFrame, serializeEnvelope } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import type { MessageType, PayloadOf } from "../protocol/messages.ts";
import { dmPreimage, dmPreimageVariants } from "../protocol/preimages.ts";
import { SOFTWARE } from "../version.ts";

/** Someone in the presence directory. */
export interface Peer {
  userId: string;
  serverId: string;
  name: string;
  pubkey: string;
  /** True when the advert's server signature verified. */
  verified: boolean;
}

/** What the client reports to its user. */
export type ClientEvent =
  | {
    kind: "dm";
    from: string;
    fromName: string;
    text: string;
    ts: number;
    verified: boolean;
    warning?: string;
  }
  | { kind: "joined"; peer: Peer }
  | { kind: "left"; peer: Peer }
  | { kind: "error"; code: string; detail: string }
  | { kind: "ack"; msgRef: string }
  | { kind: "warning"; detail: string }
  | { kind: "closed"; code: number; reason: string };

/** Options for {@linkcode SocpClient.connect}. */
export interface ConnectOptions {
  userId: string;
  key: PrivateKey;
  displayName?: string;
  /** Milliseconds to wait for the hello to be accepted (default 10 s). */
  timeoutMs?: number;
}

/** Thrown when the server refuses the hello. */
export class HelloRefused extends Error {
  constructor(readonly code: string, detail: string) {
    super(`${code}: ${detail}`);
  }
}

/** A connected SOCP user. */
export class SocpClient {
  /** Online users by id (including ourselves). */
  readonly directory = new Map<string, Peer>();
  serverId = "";
  serverPub = "";
  /** Called for every event; set by the program. Events before it is set are buffered. */
  onEvent?: (e: ClientEvent) => void;
  private readonly buffered: ClientEvent[] = [];
  private queue: Promise<void> = Promise.resolve();

  private constructor(
    private readonly ws: WebSocket,
    readonly userId: string,
    private readonly key: PrivateKey,
    readonly displayName?: string,
  ) {}

  /** Connect and say hello; resolves once the server accepted it (its ACK), rejects with the refusal. */
  static connect(url: string, opts: ConnectOptions): Promise<SocpClient> {
    const ws = new WebSocket(url);
    const c = new SocpClient(ws, opts.userId, opts.key, opts.displayName);
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(
        () => fail(new Error(`no answer from ${url} within ${(opts.timeoutMs ?? 10_000) / 1000} s`)),
        opts.timeoutMs ?? 10_000,
      );
      const fail = (e: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try {
          ws.close();
        } catch { /* ignore */ }
        reject(e);
      };
      ws.onerror = () => fail(new Error(`cannot connect to ${url}`));
      ws.onclose = (e) => {
        if (!settled) fail(new Error(`connection closed (${e.code}${e.reason ? ": " + e.reason : ""})`));
        else c.emit({ kind: "closed", code: e.code, reason: e.reason });
      };
      ws.onopen = () => c.sendHello().catch(fail);
      ws.onmessage = (e) => {
        c.queue = c.queue.then(() =>
          c.handle(String(e.data), (ok, err) => {
            if (settled) return;
            if (!ok) return fail(err!);
            settled = true;
            clearTimeout(timer);
            resolve(c);
          })
        );
      };
    });
  }

  private helloDone?: (ok: boolean, err?: Error) => void;
  private helloFallback?: ReturnType<typeof setTimeout>;

  private finishHello(): void {
    clearTimeout(this.helloFallback);
    const done = this.helloDone;
    this.helloDone = undefined;
    done?.(true);
  }

  private emit(e: ClientEvent): void {
    if (this.onEvent) this.onEvent(e);
    else this.buffered.push(e);
  }

  /** Events that arrived before `onEvent` was set. */
  drainBuffered(): ClientEvent[] {
    return this.buffered.splice(0);
  }

  private async sendHello(): Promise<void> {
    const payload: PayloadOf<"USER_HELLO"> = {
      client: SOFTWARE,
      pubkey: this.key.publicKey,
      enc_pubkey: this.key.publicKey,
      ts: Date.now(),
      nonce: encodeBase64Url(crypto.getRandomValues(new Uint8Array(16))),
    };
    if (this.displayName) payload.meta = { display_name: this.displayName };
    await this.send("USER_HELLO", "", payload, true);
  }

  /** Send a frame from this user (optionally signed with the user's key over the canonical payload). */
  async send<T extends MessageType>(
    type: T,
    to: string,
    payload: PayloadOf<T>,
    sign = false,
    ts = Date.now(),
  ) {
    const env: Envelope<T> = { type, from: this.userId, to, ts, payload };
    if (sign) env.sig = await this.key.sign(signaturePreimages(payload)[0]);
    this.ws.send(serializeEnvelope(env));
    return env;
  }

  private async handle(text: string, hello: (ok: boolean, err?: Error) => void): Promise<void> {
    const r = parseFrame(text);
    if (!r.ok) {
      return this.emit({ kind: "warning", detail: `unreadable frame from server: ${r.error.detail}` });
    }
    const env = r.envelope;
    if (
      env.type === "ACK" && (env.payload as { msg_ref: string }).msg_ref === "USER_HELLO" && !this.serverId
    ) {
      const p = env.payload as { server_id?: string; server_pub?: string };
      this.serverId = p.server_id ?? env.from;
      this.serverPub = p.server_pub ?? "";
      if (!(await this.serverSigOk(env))) {
        return hello(
          false,
          new Error("the server's ACK signature does not verify with the key it presented"),
        );
      }
      // PROFILE §6: the snapshot of who is online follows the ACK and our own advert comes last, so wait for it
      // (briefly: servers in other dialects may never advertise us back to ourselves).
      this.helloDone = hello;
      this.helloFallback = setTimeout(() => this.finishHello(), 1500);
      return;
    }
    if (!this.serverId) {
      if (env.type === "ERROR") {
        const p = env.payload as PayloadOf<"ERROR">;
        return hello(false, new HelloRefused(p.code, p.detail ?? ""));
      }
      return;
    }
    await this.dispatch(env);
  }

  /** Verify a frame's transport sig with our server's key (frames from other servers: not checkable here). */
  private async serverSigOk(env: AnyEnvelope): Promise<boolean> {
    if (!env.sig || !this.serverPub) return false;
    return (await verifyAny(this.serverPub, signaturePreimages(env.payload), env.sig)) >= 0;
  }

  private async dispatch(env: AnyEnvelope): Promise<void> {
    const fromOwnServer = env.from === this.serverId;
    const sigOk = fromOwnServer ? await this.serverSigOk(env) : false;
    if (fromOwnServer && !sigOk) {
      return this.emit({
        kind: "warning",
        detail: `dropped a ${env.type} whose server signature does not verify`,
      });
    }
    switch (env.type) {
      case "USER_ADVERTISE": {
        const p = env.payload;
        const pubkey = p.pubkey ?? (typeof p.meta?.pubkey === "string" ? p.meta.pubkey : "");
        const name = typeof p.meta?.display_name === "string" && p.meta.display_name
          ? p.meta.display_name
          : p.user_id;
        const peer: Peer = { userId: p.user_id, serverId: p.server_id, name, pubkey, verified: sigOk };
        const had = this.directory.has(p.user_id);
        this.directory.set(p.user_id, peer);
        if (!had) this.emit({ kind: "joined", peer });
        if (p.user_id === this.userId) this.finishHello();
        break;
      }
      case "USER_REMOVE": {
        const peer = this.directory.get(env.payload.user_id);
        if (peer && peer.serverId === env.payload.server_id) {
          this.directory.delete(peer.userId);
          this.emit({ kind: "left", peer });
        }
        break;
      }
      case "USER_DELIVER":
        await this.onDeliver(env);
        break;
      case "ERROR":
        this.emit({ kind: "error", code: env.payload.code, detail: env.payload.detail ?? "" });
        break;
      case "ACK":
        this.emit({ kind: "ack", msgRef: env.payload.msg_ref });
        break;
      default:
        break;
    }
  }

  private async onDeliver(env: Envelope<"USER_DELIVER">): Promise<void> {
    const p = env.payload;
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(await this.key.decrypt(p.ciphertext));
    } catch {
      return this.emit({ kind: "warning", detail: `a message from ${p.sender} could not be decrypted` });
    }
    const forms = dmPreimageVariants({
      ciphertext: p.ciphertext,
      from: p.sender,
      to: this.userId,
      ts: env.ts,
    });
    const verified = (await verifyAny(p.sender_pub, forms, p.content_sig)) >= 0;
    const known = this.directory.get(p.sender);
    let warning: string | undefined;
    if (known && known.pubkey && !sameKeyMaterial(known.pubkey, p.sender_pub)) {
      warning = `sender_pub differs from the key announced for ${known.name}`;
    }
    this.emit({
      kind: "dm",
      from: p.sender,
      fromName: known?.name ?? p.sender,
      text,
      ts: env.ts,
      verified: verified && !warning,
      warning,
    });
  }

  /** Find an online user by id or display name (case-insensitive); throws with a clear message otherwise. */
  resolve(target: string): Peer {
    const byId = this.directory.get(target);
    if (byId) return byId;
    const matches = [...this.directory.values()].filter((p) => p.name.toLowerCase() === target.toLowerCase());
    if (matches.length === 1) return matches[0];
    if (matches.length > 1) {
      throw new Error(
        `"${target}" is ambiguous: ${matches.map((m) => m.userId).join(", ")}; use the user id`,
      );
    }
    throw new Error(`no online user "${target}" (see /list)`);
  }

  /** Send an encrypted, signed DM to a user (id or display name). Returns the frame sent. */
  async tell(target: string, text: string): Promise<Envelope<"MSG_DIRECT">> {
    const peer = this.resolve(target);
    const ciphertext = await encryptTo(peer.pubkey, new TextEncoder().encode(text));
    const ts = Date.now();
    const content_sig = await this.key.sign(
      dmPreimage({ ciphertext, from: this.userId, to: peer.userId, ts }),
    );
    return this.send(
      "MSG_DIRECT",
      peer.userId,
      { ciphertext, sender_pub: this.key.publicKey, content_sig },
      false,
      ts,
    );
  }

  /** The online users, sorted by display label then user id (PROFILE §6). */
  list(): Peer[] {
    return [...this.directory.values()].sort((a, b) =>
      a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
    );
  }

  /**
   * Say CTRL_CLOSE and close the socket. Resolves once the close handshake is done (so every frame sent before
   * has left), or after `timeoutMs`.
   */
  close(timeoutMs = 3000): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    const done = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.ws.addEventListener("close", () => (clearTimeout(t), resolve()));
    });
    try {
      if (this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(serializeEnvelope({
          type: "CTRL_CLOSE",
          from: this.userId,
          to: this.serverId,
          ts: Date.now(),
          payload: {},
        }));
      }
      this.ws.close(1000);
    } catch { /* already closing */ }
    return done;
  }
}
