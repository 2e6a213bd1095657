/**
 * The client core's state, shared by its parts (directory, messages, files): the connection's phase, the
 * directory and contacts, our messages and transfers, and the task runner that drives handlers (generators that
 * yield crypto operations) and collects the outputs. Internal to lib/client: `ClientCore` (core.ts) is the API.
 *
 * @module
 */
import { type PreimageForm, signingPreimage } from "../protocol/canonical_json.ts";
import { type Envelope, serializeEnvelope } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { ASSUMED_LIMITS, Pacer, type ServerLimits } from "./pacing.ts";
import type {
  ClientEvent,
  Contact,
  CryptoOp,
  CryptoResult,
  OutgoingMessage,
  Output,
  Peer,
  SeenEntry,
  ServerPin,
} from "./types.ts";

/** Hello accepted after this long with no ERROR (PROFILE §15). */
export const HELLO_SILENCE_MS = 3000;
/** After acceptance, wait this long at most for our own advert (the end of the directory snapshot). */
export const SNAPSHOT_WAIT_MS = 1500;
/** A message that was on the wire is sent again after a reconnect only while the server's seen cache (10 min)
 * still drops the copy if the first one arrived, and its freshness check (10 min) still admits it. */
export const RESEND_WINDOW_MS = 8 * 60_000;
/** A message never sent is re-stamped (new ts, new signatures) when it waited longer than this. */
export const RESTAMP_AFTER_MS = 5 * 60_000;
/** Plaintext bytes per FILE_CHUNK to an RSA-4096 key under PROFILE §11's frame limit: 16 OAEP blocks (PROFILE §9). */
export const FILE_CHUNK_BYTES = 16 * 446;
/** Largest frame text the core reads. */
export const MAX_FRAME_CHARS = 4 * 1024 * 1024;
/** At most this many messages of ours are kept for states and resends. */
export const MAX_OUTGOING = 2000;
/** The receiver's refusal notice, sent as an end-to-end encrypted DM (SOCP has no receiver-to-sender error). */
export const REFUSAL_RE = /^\[auto\] could not accept "([^"]*)" \(file ([^)\s]+)\): ([\s\S]*)$/;

/** A handler: it yields crypto operations and resumes with their results. */
export type Task = Generator<CryptoOp, void, CryptoResult>;

/** Options of a `ClientCore`. */
export interface CoreOptions {
  /** The user id (a UUID) this core speaks for. */
  userId: string;
  /** Our public key string (base64url SPKI). */
  publicKey: string;
  /** Name shown to others in presence (default: the user id). */
  displayName?: string;
  /** The server id, when known before the hello (a USER_HELLO says `to` = it, else "*"). */
  serverId?: string;
  /** Largest file we send or accept (default 16 MiB, the server's default). */
  maxFileBytes?: number;
  /**
   * Hold incoming files as offers: their chunks are kept encrypted until the shell calls `acceptFile` (or
   * `declineFile`). Default false: every file is decrypted as it arrives.
   */
  holdFiles?: boolean;
  /** The key pinned for this server address at first contact (the shell keeps it per address). */
  serverPin?: ServerPin;
  /** Delivered messages remembered from earlier sessions (oldest first), and the store's floor (see trust.ts). */
  seen?: { entries: SeenEntry[]; floor?: number };
  /** Reconnect after a drop, and after a failed first attempt (default true). */
  reconnect?: boolean;
  /** First reconnect delay (default 1000 ms; doubles up to `maxBackoffMs`). */
  backoffMs?: number;
  /** Longest reconnect delay (default 30 s). */
  maxBackoffMs?: number;
  /** An attempt whose hello is not accepted within this many ms is given up (closed; default 10 s). */
  connectTimeoutMs?: number;
}

/** One of our messages, with what the core keeps to send it (again). */
export interface Outgoing extends OutgoingMessage {
  frame?: string;
  ref?: string;
  /** Written to a connection at least once. */
  wired: boolean;
  /** Time it was last written. */
  wiredAt: number;
  /** A public-channel message waiting for the channel key (written before it arrived). */
  awaitChannel?: boolean;
}

/** A file being received. */
export interface Incoming {
  fileId: string;
  from: string;
  name: string;
  size: number;
  sha256: string;
  mode: "dm" | "public";
  chunks: Map<number, Uint8Array | null>;
  pending: number;
  received: number;
  lastPct: number;
  verified: boolean;
  failed: string | undefined;
  ended: boolean;
  /** Chunks are decrypted (false while the file is an offer the user has not accepted). */
  accepted: boolean;
  /** Chunks kept encrypted until the offer is accepted. */
  held: { index: number; ciphertext: string }[];
  /** Characters of ciphertext held (bounded by what the announced size can take). */
  heldChars: number;
}

/** A file of ours being sent. */
export interface SendingFile {
  fileId: string;
  name: string;
  to: string;
  toLabel: string;
  encKey: string;
  /** The bytes still to send (emptied at FILE_END or when it stops). */
  data: Uint8Array;
  size: number;
  sent: number;
  /** Plaintext bytes per chunk (the server's frame limit and the recipient's key size, pacing.ts). */
  chunkBytes: number;
  chunks: number;
  /** The next chunk to send (`chunks`: FILE_END is next). */
  next: number;
  /** A step (FILE_START, a chunk, FILE_END) is being built. */
  busy: boolean;
  /** Settled when FILE_END left, or with the reason the transfer stopped. */
  ticket: number;
  state: "sending" | "ended" | "accepted" | "failed";
  reason?: string;
  ref?: string;
}

/** UTF-8 encoder. */
export const utf8 = new TextEncoder();
/** UTF-8 decoder that refuses invalid bytes. */
export const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** True for a plain (non-array) object. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** The mutable state of one client core and its task runner. */
export class CoreState {
  /** Our user id. */
  readonly userId: string;
  /** Our public key (base64url SPKI). */
  readonly publicKey: string;
  /** Our display name, when we gave one. */
  readonly displayName?: string;
  /** Online users by id (including ourselves). */
  readonly directory = new Map<string, Peer>();
  /** Everyone we know (seen online now or in an earlier session), by id. */
  readonly contacts = new Map<string, Contact>();
  /** The server's id, once known ("" before). */
  serverId = "";
  /** The server's public key, once its hello reply gave it ("" before). */
  serverPub = "";
  /** The connection's phase. */
  phase: "offline" | "hello" | "online" | "refused" = "offline";
  /** True once the hello was accepted and the snapshot arrived (or did not within 1.5 s). */
  ready = false;
  /** The public channel, once a key share gave us its key. */
  channel: { creatorPub: string } | null = null;
  /** The server signed its hello reply: its frames must be signed. */
  serverSigns = false;
  /** PROFILE §15: the preimage forms the server's signatures verified in (some sign only the spaced form). */
  readonly serverForms = { canonical: false, spaced: false };
  /** When our hello went out. */
  helloAt = 0;
  /** When the hello was accepted. */
  acceptedAt = 0;
  /** The server's hello reply is being checked. */
  helloChecking = false;
  /** Largest file we send or accept. */
  readonly maxFileBytes: number;
  /** Incoming files wait as offers until accepted. */
  readonly holdFiles: boolean;
  /** Outputs not drained yet. */
  out: Output[] = [];
  /** Last ticket or crypto request id. */
  seq = 0;
  /** Last outgoing message number. */
  msgSeq = 0;
  /** Tasks waiting for a crypto result, by request id. */
  readonly waiting = new Map<number, { task: Task; inbound: boolean; ticket?: number }>();
  /** Inbound frames waiting to be handled, in order. */
  readonly inbound: (() => Task)[] = [];
  /** An inbound frame is being handled. */
  inboundBusy = false;
  /** Our messages still tracked (most recent last). */
  readonly outgoing: Outgoing[] = [];
  /** Our DMs by msg_ref, until ACKed. */
  readonly byRef = new Map<string, Outgoing>();
  /** Files being received, by `from|file_id`. */
  readonly incoming = new Map<string, Incoming>();
  /** Files of ours being sent, by file id. */
  readonly sendingFiles = new Map<string, SendingFile>();
  /** Messages already shown, by dedupe key (kind, sender, ciphertext), oldest first. */
  readonly seen = new Map<string, { ts: number; verified: boolean }>();
  /** Verified messages dated at or before this were forgotten: one arriving now is taken for a replay. */
  seenFloor = 0;
  /** Our server's pinned key (null before the first contact with a server that presents one). */
  serverPin: ServerPin | null = null;
  /** The server of this connection presents the pinned key (channel keys are accepted only then). */
  serverTrusted = false;
  /** A key our server presented that differs from the pin (waits for the user's decision). */
  serverPendingPub = "";
  /** The time of the latest input. */
  now = 0;
  /** The server's limits: announced in its hello ACK, else PROFILE §11's defaults. */
  limits: ServerLimits = { ...ASSUMED_LIMITS };
  /** Our frames go through this token bucket, under the server's. */
  readonly pacer = new Pacer();
  /** Reconnect after a drop or a failed attempt. */
  readonly reconnect: boolean;
  /** First reconnect delay. */
  readonly backoffMs: number;
  /** Longest reconnect delay. */
  readonly maxBackoffMs: number;
  /** How long an attempt may take until its hello is accepted. */
  readonly connectTimeoutMs: number;
  /** The shell asked to be connected ({@linkcode ClientCore.start}) and did not stop. */
  wanted = false;
  /** A socket was asked for and has not closed yet. */
  socket = false;
  /** Failed attempts since the last accepted hello. */
  attempt = 0;
  /** When to open the next attempt (0: none planned). */
  reconnectAt = 0;
  /** When the current attempt is given up unless its hello was accepted (0: none running). */
  attemptUntil = 0;
  /** Why the current attempt was given up ("" unless it timed out). */
  gaveUp = "";

  /** The state of a new core for one user. */
  constructor(opts: CoreOptions) {
    this.userId = opts.userId;
    this.publicKey = opts.publicKey;
    this.displayName = opts.displayName;
    this.serverId = opts.serverId ?? "";
    this.maxFileBytes = opts.maxFileBytes ?? 16 * 1024 * 1024;
    this.holdFiles = opts.holdFiles ?? false;
    this.reconnect = opts.reconnect ?? true;
    this.backoffMs = opts.backoffMs ?? 1000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 30_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    if (opts.serverPin && typeof opts.serverPin.pubkey === "string") this.serverPin = { ...opts.serverPin };
  }

  /** A server signature verified in `form` (see {@linkcode CoreState.signSpaced}). */
  noteServerForm(form: PreimageForm): void {
    if (form === "spaced") this.serverForms.spaced = true;
    else if (form !== "either") this.serverForms.canonical = true;
  }

  /**
   * Sign our frames in the spaced form (PROFILE §15): the server's signatures verified only in that form, and
   * such servers drop every other form. A server seen signing canonically (too) gets our canonical form.
   */
  get signSpaced(): boolean {
    return this.serverForms.spaced && !this.serverForms.canonical;
  }

  /** The bytes our frame signature covers for `payload` (canonical, or spaced: {@linkcode CoreState.signSpaced}). */
  sigPreimage(payload: unknown): Uint8Array {
    return signingPreimage(payload, this.signSpaced);
  }

  /** Run a task; with `ticketed`, a `settled` output reports its end under the returned ticket. */
  run(task: Task, inbound: boolean, ticketed = true): number {
    const ticket = ticketed ? ++this.seq : undefined;
    this.step(task, undefined as unknown as CryptoResult, inbound, ticket);
    return ticket ?? 0;
  }

  /** Queue an inbound task; inbound frames are handled one at a time, in order. */
  enqueue(make: () => Task): void {
    this.inbound.push(make);
    if (!this.inboundBusy) this.pump();
  }

  /** Run queued inbound tasks until one waits for crypto. */
  pump(): void {
    while (!this.inboundBusy && this.inbound.length > 0) {
      const make = this.inbound.shift()!;
      this.inboundBusy = true;
      let task: Task;
      try {
        task = make();
      } catch (e) {
        this.inboundBusy = false;
        this.emit({ kind: "warning", detail: `a frame could not be handled: ${(e as Error).message}` });
        continue;
      }
      this.step(task, undefined as unknown as CryptoResult, true, undefined);
    }
  }

  /** Advance a task with the result of its last crypto operation. */
  step(task: Task, value: CryptoResult, inbound: boolean, ticket: number | undefined): void {
    let r: IteratorResult<CryptoOp, void>;
    try {
      r = task.next(value);
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      if (ticket !== undefined) this.out.push({ kind: "settled", ticket, error: msg });
      else this.emit({ kind: "warning", detail: `a frame could not be handled: ${msg}` });
      if (inbound) {
        this.inboundBusy = false;
        this.pump();
      }
      return;
    }
    if (r.done) {
      if (ticket !== undefined) this.out.push({ kind: "settled", ticket });
      if (inbound) {
        this.inboundBusy = false;
        this.pump();
      }
      return;
    }
    const id = ++this.seq;
    this.waiting.set(id, { task, inbound, ticket });
    this.out.push({ kind: "crypto", id, op: r.value });
  }

  /** Report an event to the shell. */
  emit(event: ClientEvent): void {
    this.out.push({ kind: "event", event });
  }

  /** Ask the shell to send a frame. */
  emitSend(env: Envelope): void {
    this.send(serializeEnvelope(env));
  }

  /** Send a frame's text through the pacer: now, or once its token has come (in order either way). */
  send(text: string): void {
    for (const t of this.pacer.offer(text, this.now)) this.out.push({ kind: "send", text: t });
  }

  /** A new ticket, settled later with {@linkcode CoreState.settle}. */
  ticket(): number {
    return ++this.seq;
  }

  /** Report the end of the work under `ticket` (with `error` when it failed). */
  settle(ticket: number, error?: string): void {
    this.out.push(error === undefined ? { kind: "settled", ticket } : { kind: "settled", ticket, error });
  }

  /** `name`, or `name#abcd` when another known user has the same name (case-insensitive). */
  labelOf(userId: string): string {
    const who = this.directory.get(userId) ?? this.contacts.get(userId);
    if (!who) return userId;
    const name = who.name.toLowerCase();
    for (const pool of [this.directory, this.contacts]) {
      for (const other of pool.values()) {
        if (other.userId !== userId && other.name.toLowerCase() === name) {
          const fp = who.fingerprint.replace(/:/g, "");
          return `${who.name}#${fp ? fp.slice(0, 4) : userId.slice(0, 4)}`;
        }
      }
    }
    return who.name;
  }

  /** The name to show for a user id. */
  nameOf(userId: string): string {
    return (this.directory.get(userId) ?? this.contacts.get(userId))?.name ?? userId;
  }

  /**
   * PROFILE §4 and §16: the key a message claims must be the key pinned for its sender (or, without a pin, the
   * one presence announced); a message signed by another key is not theirs.
   */
  senderKeyWarning(sender: string, senderPub: string): string | undefined {
    if (sender === this.userId) {
      return sameKeyMaterial(this.publicKey, senderPub) ? undefined : "signed with a key that is not yours";
    }
    const pinned = this.contacts.get(sender)?.pubkey ?? this.directory.get(sender)?.pubkey;
    if (!pinned) return undefined;
    return sameKeyMaterial(pinned, senderPub)
      ? undefined
      : `signed with a key that is not the one pinned for ${this.labelOf(sender)}`;
  }
}
