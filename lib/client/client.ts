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
import { encryptTo, PrivateKey, sha256, sha256Hex, verifyAny } from "../crypto/rsa.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import { signaturePreimages } from "../protocol/canonical_json.ts";
import { type AnyEnvelope, type Envelope, parseFrame, serializeEnvelope } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import type { MessageType, PayloadOf } from "../protocol/messages.ts";
import {
  canonicalPayloadBytes,
  dmPreimage,
  dmPreimageVariants,
  fileStartPreimage,
  keySharePreimage,
  publicPreimage,
  publicPreimageVariants,
} from "../protocol/preimages.ts";
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
  | { kind: "ack"; msgRef: string; what?: string }
  | {
    kind: "public";
    from: string;
    fromName: string;
    text: string;
    ts: number;
    verified: boolean;
    warning?: string;
  }
  | { kind: "channel"; version: number }
  | {
    kind: "fileStart";
    fileId: string;
    from: string;
    fromName: string;
    name: string;
    size: number;
    mode: "dm" | "public";
  }
  | { kind: "fileProgress"; fileId: string; name: string; received: number; size: number }
  | {
    kind: "file";
    fileId: string;
    from: string;
    fromName: string;
    name: string;
    mode: "dm" | "public";
    /** The file's bytes when size and SHA-256 matched; null otherwise (see `problem`). */
    bytes: Uint8Array | null;
    problem?: string;
    /** The sender's FILE_START content_sig verified with the key presence announced for them. */
    verified: boolean;
  }
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

interface Incoming {
  name: string;
  size: number;
  sha256: string;
  mode: "dm" | "public";
  chunks: Map<number, Promise<Uint8Array>>;
  received: number;
  lastPct: number;
  verified: boolean;
  failed: string | undefined;
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
  /** Everyone seen online this session, kept after they leave, so DMs to them can be queued (PROFILE §10). */
  readonly known = new Map<string, Peer>();
  serverId = "";
  serverPub = "";
  /** Called for every event; set by the program. Events before it is set are buffered. */
  onEvent?: (e: ClientEvent) => void;
  private readonly buffered: ClientEvent[] = [];
  /** The public channel's key, once a PUBLIC_CHANNEL_KEY_SHARE gave it to us. */
  private channel: { creatorPub: string; key: PrivateKey } | null = null;
  /** Frames we sent that the server may ACK, by msg_ref. */
  private readonly pendingAcks = new Map<string, string>();
  private readonly incoming = new Map<string, Incoming>();
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
        this.known.set(p.user_id, peer);
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
      case "PUBLIC_CHANNEL_KEY_SHARE":
        await this.onKeyShare(env);
        break;
      case "MSG_PUBLIC_CHANNEL":
        await this.onPublic(env);
        break;
      case "FILE_START":
      case "FILE_CHUNK":
      case "FILE_END":
        await this.onFile(env);
        break;
      case "ERROR":
        this.emit({ kind: "error", code: env.payload.code, detail: env.payload.detail ?? "" });
        break;
      case "ACK": {
        const what = this.pendingAcks.get(env.payload.msg_ref);
        this.pendingAcks.delete(env.payload.msg_ref);
        this.emit({ kind: "ack", msgRef: env.payload.msg_ref, what });
        break;
      }
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
    const warning = this.senderKeyWarning(p.sender, p.sender_pub);
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
    for (const pool of [this.directory, this.known]) {
      const byId = pool.get(target);
      if (byId) return byId;
      const matches = [...pool.values()].filter((p) => p.name.toLowerCase() === target.toLowerCase());
      if (matches.length === 1) return matches[0];
      if (matches.length > 1) {
        throw new Error(
          `"${target}" is ambiguous: ${matches.map((m) => m.userId).join(", ")}; use the user id`,
        );
      }
    }
    throw new Error(`no user "${target}" has been seen online (see /list)`);
  }

  /** True when `userId` is online now (in the presence directory). */
  isOnline(userId: string): boolean {
    return this.directory.has(userId);
  }

  /** Send an encrypted, signed DM to a user (id or display name). Returns the frame sent. */
  async tell(target: string, text: string): Promise<Envelope<"MSG_DIRECT">> {
    const peer = this.resolve(target);
    const ciphertext = await encryptTo(peer.pubkey, new TextEncoder().encode(text));
    const ts = Date.now();
    const content_sig = await this.key.sign(
      dmPreimage({ ciphertext, from: this.userId, to: peer.userId, ts }),
    );
    const payload = { ciphertext, sender_pub: this.key.publicKey, content_sig };
    await this.expectAck(payload, `message to ${peer.name}`);
    return this.send("MSG_DIRECT", peer.userId, payload, false, ts);
  }

  private async expectAck(payload: unknown, what: string): Promise<void> {
    this.pendingAcks.set(encodeBase64Url(await sha256(canonicalPayloadBytes(payload))), what);
    if (this.pendingAcks.size > 10_000) this.pendingAcks.delete(this.pendingAcks.keys().next().value!);
  }

  /** True once the public channel key arrived. */
  get hasChannel(): boolean {
    return this.channel !== null;
  }

  /** Send a message to the public channel (encrypted under the channel key, signed by us). */
  async all(text: string): Promise<Envelope<"MSG_PUBLIC_CHANNEL">> {
    if (!this.channel) throw new Error("the public channel key has not arrived yet; try again in a moment");
    const ciphertext = await encryptTo(this.channel.creatorPub, new TextEncoder().encode(text));
    const ts = Date.now();
    const content_sig = await this.key.sign(publicPreimage({ ciphertext, from: this.userId, ts }));
    return this.send(
      "MSG_PUBLIC_CHANNEL",
      "public",
      { ciphertext, sender_pub: this.key.publicKey, content_sig },
      false,
      ts,
    );
  }

  /**
   * Send a file to a user (id or display name) or, with `target` "public", to the public channel. Chunks hold up
   * to 16 OAEP blocks (7,136 bytes, PROFILE §9) and are paced under the server's rate limit. Resolves after
   * FILE_END has been sent; the server ACKs it once the whole file is relayed.
   */
  async sendFile(
    target: string,
    name: string,
    data: Uint8Array,
    onProgress?: (sent: number, size: number) => void,
  ): Promise<string> {
    const pub = target === "public";
    if (pub && !this.channel) {
      throw new Error("the public channel key has not arrived yet; try again in a moment");
    }
    const peer = pub ? null : this.resolve(target);
    const to = peer ? peer.userId : "public";
    const encKey = peer ? peer.pubkey : this.channel!.creatorPub;
    const fileId = crypto.randomUUID();
    const sha = await sha256Hex(data);
    const ts = Date.now();
    const content_sig = await this.key.sign(
      fileStartPreimage({
        file_id: fileId,
        sha256: sha,
        size: data.length,
        from: this.userId,
        to: pub ? undefined : to,
        ts,
      }),
    );
    await this.send(
      "FILE_START",
      to,
      { file_id: fileId, name, size: data.length, sha256: sha, mode: pub ? "public" : "dm", content_sig },
      false,
      ts,
    );
    const CHUNK = 16 * 446;
    let tokens = 200;
    let last = Date.now();
    for (let i = 0, o = 0; o < data.length; i++, o += CHUNK) {
      const ciphertext = await encryptTo(encKey, data.subarray(o, o + CHUNK));
      // Stay under the server's token bucket (100 frames/s, burst 400) with room for other traffic.
      const now = Date.now();
      tokens = Math.min(200, tokens + ((now - last) * 80) / 1000);
      last = now;
      if (tokens < 1) {
        await new Promise((r) => setTimeout(r, Math.ceil(((1 - tokens) * 1000) / 80)));
        tokens = 1;
        last = Date.now();
      }
      tokens -= 1;
      await this.send("FILE_CHUNK", to, { file_id: fileId, index: i, ciphertext });
      onProgress?.(Math.min(o + CHUNK, data.length), data.length);
    }
    const endPayload = { file_id: fileId };
    await this.expectAck(endPayload, `file ${name} to ${peer?.name ?? "everyone"}`);
    await this.send("FILE_END", to, endPayload);
    return fileId;
  }

  /** PROFILE §4: the key a message claims must be the key presence announced for its sender. */
  private senderKeyWarning(sender: string, senderPub: string): string | undefined {
    const known = this.directory.get(sender) ?? this.known.get(sender);
    return known?.pubkey && !sameKeyMaterial(known.pubkey, senderPub)
      ? `sender_pub differs from the key announced for ${known.name}`
      : undefined;
  }

  private async onKeyShare(env: Envelope<"PUBLIC_CHANNEL_KEY_SHARE">): Promise<void> {
    const p = env.payload;
    const mine = p.shares.find((s) => s.member === this.userId);
    if (!mine) return;
    if ((await verifyAny(p.creator_pub, [keySharePreimage(p.shares, p.creator_pub)], p.content_sig)) < 0) {
      return this.emit({
        kind: "warning",
        detail: "ignored a public channel key share whose signature does not verify",
      });
    }
    try {
      const key = await PrivateKey.fromPkcs8(await this.key.decrypt(mine.wrapped_public_channel_key));
      if (!sameKeyMaterial(key.publicKey, p.creator_pub)) throw new Error("mismatch");
      const fresh = this.channel?.creatorPub !== p.creator_pub;
      this.channel = { creatorPub: p.creator_pub, key };
      if (fresh) this.emit({ kind: "channel", version: 0 });
    } catch {
      this.emit({ kind: "warning", detail: "the public channel key share could not be opened" });
    }
  }

  private async onPublic(env: Envelope<"MSG_PUBLIC_CHANNEL">): Promise<void> {
    if (env.from === this.userId) return;
    const p = env.payload;
    if (!this.channel) {
      return this.emit({
        kind: "warning",
        detail: `a public message from ${env.from} arrived before the channel key`,
      });
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(await this.channel.key.decrypt(p.ciphertext));
    } catch {
      return this.emit({
        kind: "warning",
        detail: `a public message from ${env.from} could not be decrypted`,
      });
    }
    const forms = publicPreimageVariants({ ciphertext: p.ciphertext, from: env.from, ts: env.ts });
    const verified = (await verifyAny(p.sender_pub, forms, p.content_sig)) >= 0;
    const known = this.directory.get(env.from);
    const warning = this.senderKeyWarning(env.from, p.sender_pub);
    this.emit({
      kind: "public",
      from: env.from,
      fromName: known?.name ?? env.from,
      text,
      ts: env.ts,
      verified: verified && !warning,
      warning,
    });
  }

  private async onFile(
    env: Envelope<"FILE_START"> | Envelope<"FILE_CHUNK"> | Envelope<"FILE_END">,
  ): Promise<void> {
    const k = `${env.from}|${env.payload.file_id}`;
    const name = this.directory.get(env.from)?.name ?? env.from;
    if (env.type === "FILE_START") {
      const p = env.payload;
      if (this.incoming.size >= 64) {
        return this.emit({
          kind: "warning",
          detail: `refused a file from ${name}: too many transfers at once`,
        });
      }
      const known = this.directory.get(env.from)?.pubkey;
      const pre = fileStartPreimage({
        file_id: p.file_id,
        sha256: p.sha256,
        size: p.size,
        from: env.from,
        to: p.mode === "public" ? undefined : env.to,
        ts: env.ts,
      });
      const verified = !!p.content_sig && !!known && (await verifyAny(known, [pre], p.content_sig)) >= 0;
      this.incoming.set(k, {
        name: p.name,
        size: p.size,
        sha256: p.sha256,
        mode: p.mode,
        chunks: new Map(),
        received: 0,
        lastPct: 0,
        verified,
        failed: undefined,
      });
      this.emit({
        kind: "fileStart",
        fileId: p.file_id,
        from: env.from,
        fromName: name,
        name: p.name,
        size: p.size,
        mode: p.mode,
      });
      return;
    }
    const t = this.incoming.get(k);
    if (!t) return;
    if (env.type === "FILE_CHUNK") {
      const key = t.mode === "public" ? this.channel?.key : this.key;
      if (!key) {
        t.failed = "no key to decrypt it";
        return;
      }
      // Decrypt in the background so chunks decrypt concurrently; FILE_END waits for all of them.
      const index = env.payload.index;
      const fileId = env.payload.file_id;
      if (t.chunks.has(index)) t.failed = `chunk ${index} arrived twice`;
      t.chunks.set(
        index,
        key.decrypt(env.payload.ciphertext).then((bytes) => {
          t.received += bytes.length;
          if (t.received > t.size) t.failed = "more data than announced";
          const pct = t.size ? Math.floor((t.received / t.size) * 10) : 10;
          if (pct > t.lastPct) {
            t.lastPct = pct;
            this.emit({ kind: "fileProgress", fileId, name: t.name, received: t.received, size: t.size });
          }
          return bytes;
        }, () => {
          t.failed = `chunk ${index} could not be decrypted`;
          return new Uint8Array();
        }),
      );
      return;
    }
    this.incoming.delete(k);
    const indexes = [...t.chunks.keys()].sort((a, b) => a - b);
    const parts = await Promise.all(indexes.map((i) => t.chunks.get(i)!));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const part of parts) {
      bytes.set(part, o);
      o += part.length;
    }
    let problem = t.failed;
    if (!problem && indexes.some((v, i) => v !== i)) problem = "chunks are missing";
    if (!problem && bytes.length !== t.size) problem = `size is ${bytes.length} bytes, ${t.size} announced`;
    if (!problem && (await sha256Hex(bytes)) !== t.sha256.toLowerCase()) problem = "SHA-256 does not match";
    this.emit({
      kind: "file",
      fileId: env.payload.file_id,
      from: env.from,
      fromName: name,
      name: t.name,
      mode: t.mode,
      bytes: problem ? null : bytes,
      problem,
      verified: t.verified,
    });
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
