/**
 * What {@linkcode SocpClient.create} and {@linkcode SocpClient.connect} take, and the errors the client throws.
 *
 * @module
 */
import type { PrivateKey } from "../crypto/rsa.ts";
import type { TrustStore } from "./store.ts";
import type { Contact, CryptoRunner } from "./types.ts";

/** Options for {@linkcode SocpClient.connect}. */
export interface ConnectOptions {
  /** The user id (a UUID) this client speaks for. */
  userId: string;
  /** The user's RSA key: signs frames and decrypts what is sent to the user. */
  key: PrivateKey;
  /** Name shown to others in presence (default: the user id). */
  displayName?: string;
  /** Milliseconds an attempt may take until its hello is accepted; then it is given up (default 10 s). */
  timeoutMs?: number;
  /** Reconnect after a drop (default true). */
  reconnect?: boolean;
  /**
   * Runs the core's crypto (sign, verify, encrypt, decrypt, open the channel key). Default: a
   * {@linkcode WebCryptoRunner} over `key` (and `onChannelKey`); the web app gives one whose decryptions run in
   * Web Workers.
   */
  crypto?: CryptoRunner;
  /** Contacts kept from earlier sessions (so DMs reach known offline users). */
  contacts?: Contact[];
  /** The server id when known (the USER_HELLO's `to`; else "*" until the server says it). */
  serverId?: string;
  /** Largest file to send or accept (default 16 MiB). */
  maxFileBytes?: number;
  /** First reconnect delay (default 1000 ms; doubles up to `maxBackoffMs`). */
  backoffMs?: number;
  /** Longest reconnect delay (default 30 s). */
  maxBackoffMs?: number;
  /** Incoming files are offers, decrypted only after {@linkcode SocpClient.acceptFile} (default false). */
  holdFiles?: boolean;
  /** Called with the public channel's key when a key share opened it (with the default crypto runner). */
  onChannelKey?: (key: PrivateKey) => void;
  /**
   * Where pins, marks, the server's key and the messages already shown are kept across restarts (PROFILE §16):
   * loaded before connecting, written as they change. Without one they live as long as the client.
   */
  store?: TrustStore;
}

/** Thrown when the server refuses the hello. */
export class HelloRefused extends Error {
  /** `code` is the server's error code; `detail` its explanation. */
  constructor(readonly code: string, detail: string) {
    super(`${code}: ${detail}`);
    this.name = "HelloRefused";
  }
}

/** Thrown by {@linkcode SocpClient.sendFile} when the transfer was stopped (already reported by a `fileRefused` event). */
export class FileStopped extends Error {
  /** `fileId` names the stopped transfer; `reason` says why it stopped. */
  constructor(readonly fileId: string, reason: string) {
    super(reason);
    this.name = "FileStopped";
  }
}
