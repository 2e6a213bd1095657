/**
 * What the client core ({@linkcode ClientCore}) exchanges with its shells: the crypto it asks for, the outputs it
 * returns (frames to send, events, crypto requests) and the events a user interface shows. Browser-safe.
 *
 * @module
 */

/** A crypto operation the core needs; the shell runs it (WebCrypto) and feeds the result back. */
export type CryptoOp =
  /** PSS-verify `sig` over any of `preimages` with `key`; result: index of the preimage that verified, or -1. */
  | { op: "verify"; key: string; preimages: Uint8Array[]; sig: string }
  /** Multi-block OAEP decrypt with our own key or the public channel key; result: bytes, or null. */
  | { op: "decrypt"; with: "user" | "channel"; ciphertext: string }
  /** Multi-block OAEP encrypt to a public key string; result: base64url ciphertext, or null (unusable key). */
  | { op: "encrypt"; key: string; data: Uint8Array }
  /** PSS-sign with our own key; result: base64url signature, or null. */
  | { op: "sign"; data: Uint8Array }
  /** SHA-256; result: the 32 digest bytes. */
  | { op: "sha256"; data: Uint8Array }
  /**
   * Decrypt a wrapped public-channel private key with our key, import it, check its public half equals
   * `creatorPub`, and keep it for later `decrypt { with: "channel" }`; result: true when it worked.
   */
  | { op: "openChannelKey"; wrapped: string; creatorPub: string }
  /** Several operations concurrently; result: their results in order. */
  | { op: "all"; ops: CryptoOp[] };

/** The result of a {@linkcode CryptoOp} (see each operation for its type). */
export type CryptoResult = number | string | boolean | Uint8Array | null | CryptoResult[];

/**
 * Carries out the core's {@linkcode CryptoOp}s: `WebCryptoRunner` by default; a shell may give its own (the web
 * app's decrypts in Web Workers). Failures are the op's "no" value (null, -1, false), never a rejection.
 */
export interface CryptoRunner {
  /** The result of `op` (see {@linkcode CryptoOp} for each result type). */
  run(op: CryptoOp): Promise<CryptoResult>;
}

/** What the core asks its shell to do. */
export type Output =
  /** Write this text frame to the socket now. */
  | { kind: "send"; text: string }
  /** Run this crypto operation and call `core.cryptoDone(id, result)`. */
  | { kind: "crypto"; id: number; op: CryptoOp }
  /** Tell the user interface. */
  | { kind: "event"; event: ClientEvent }
  /** The work started under `ticket` finished (with `error` when it failed). */
  | { kind: "settled"; ticket: number; error?: string }
  /** Open a connection now (first start, a reconnect's time, a retry); then call `opened`, or `closed` if it fails. */
  | { kind: "open" }
  /** Close the socket (the attempt took too long to be accepted); then call `closed` as for any close. */
  | { kind: "close"; code: number; reason: string };

/** Someone in the presence directory. */
export interface Peer {
  /** The user's id (a UUID). */
  userId: string;
  /** The user's home server. */
  serverId: string;
  /** Display name as advertised (or the user id). */
  name: string;
  /** `name`, or `name#abcd` (fingerprint prefix) when another known user has the same name. */
  label: string;
  /** The key as presence announced it ("" when their server advertises none). */
  pubkey: string;
  /** `ab12:cd34:…`: the first 16 bytes of SHA-256 of the key's SPKI ("" without a key). */
  fingerprint: string;
  /** True when the advert's server signature verified. */
  verified: boolean;
  /**
   * How far the advertised key is trusted (PROFILE §16): "derived" (the id is derived from it), "verified" (the
   * user compared the safety code), "tofu" (pinned at first sight), "changed" (not the pinned key: sending to
   * this user is blocked until the user decides). "none" without a key. Our own entry: "derived" or "tofu".
   */
  trust: KeyTrust | "none";
}

/** How a contact's pinned key is trusted (see {@linkcode Peer.trust}). */
export type KeyTrust = "derived" | "verified" | "tofu" | "changed";

/** What a user interface shows about a contact's key ({@linkcode ClientCore.trustInfo}). */
export interface TrustInfo {
  /** The contact's user id. */
  userId: string;
  /** How the contact is shown. */
  label: string;
  /** How far the pinned key is trusted. */
  trust: KeyTrust;
  /** Fingerprint of the pinned key. */
  fingerprint: string;
  /** The user id is derived from the pinned key (verified by construction). */
  derived: boolean;
  /** The user marked the contact verified. */
  verified: boolean;
  /** The conversation's safety code with the pinned key (12 groups of 5 digits, the same on both sides). */
  safetyCode: string;
  /** A different key presented and not accepted yet. */
  pending?: { fingerprint: string; safetyCode: string; derived: boolean };
}

/** A delivered message remembered so a copy (or a replay, even after a restart) is not shown again. */
export interface SeenEntry {
  /** Hex digest of the message's kind, sender and ciphertext. */
  key: string;
  /** The message's date (ms; never later than when it arrived). */
  ts: number;
  /** Its signature verified with the sender's pinned key. */
  verified: boolean;
}

/** Our server's key as pinned at first contact (the shell keeps one per server address). */
export interface ServerPin {
  /** The server's id when pinned (ids may change; the address and the key identify it). */
  serverId: string;
  /** The server's public key. */
  pubkey: string;
  /** Its fingerprint. */
  fingerprint: string;
  /** The public channel's creator key (the channel key's public half) as first received from this server. */
  channelCreatorPub?: string;
}

/** A person we know, kept across sessions by the shell (file or IndexedDB). */
export interface Contact {
  /** The user's id (a UUID). */
  userId: string;
  /** Their display name when last seen. */
  name: string;
  /** Their public key (base64url SPKI). */
  pubkey: string;
  /** `ab12:cd34:…`: the first 16 bytes of SHA-256 of the key's SPKI. */
  fingerprint: string;
  /** The last home server they were seen on. */
  serverId: string;
  /** The user compared the safety code and marked them verified (a key change is then a hard stop). */
  verified?: boolean;
  /** A different key presented for this id and not accepted: sending is blocked until the user decides. */
  pending?: { pubkey: string; fingerprint: string; serverId: string; name: string };
}

/** The states of a message we send. */
export type SendState =
  /** Not on the wire yet (being encrypted, or waiting for the connection). */
  | "sending"
  /** Written to an open connection (live deliveries get no ACK in SOCP). */
  | "sent"
  /** The server ACKed it: queued for an offline recipient, or handed to their home server (a file: relayed). */
  | "accepted"
  /** Refused (see `error`). */
  | "failed";

/** A message we send, as the user interface shows it. */
export interface OutgoingMessage {
  /** Local id of the message (stable across resends). */
  id: string;
  /** A direct message or a public-channel post. */
  kind: "dm" | "public";
  /** Recipient user id, or "public". */
  to: string;
  /** The recipient's label as shown when it was written. */
  toLabel: string;
  /** The message text. */
  text: string;
  /** When it was written (ms since the epoch). */
  ts: number;
  /** Where it is on its way (see {@linkcode SendState}). */
  state: SendState;
  /** Sent again after a reconnect. */
  resent: boolean;
  /** True when the recipient was not online when it was written. */
  recipientOffline: boolean;
  /** Why it failed (state "failed"). */
  error?: string;
}

/** A received text message (a DM or a public-channel post), as reported in a {@linkcode ClientEvent}. */
export interface TextMessageEvent {
  /** The sender's user id. */
  from: string;
  /** The sender's display name, if known. */
  fromName: string;
  /** How to show the sender (name and short id). */
  fromLabel: string;
  /** The message text. */
  text: string;
  /** The sender's timestamp (ms). */
  ts: number;
  /** The content signature verified against the sender's known key. */
  verified: boolean;
  /** The "ciphertext" was plain text: not end-to-end encrypted. */
  unencrypted?: boolean;
  /** Why the sender's key is suspicious, if it is. */
  warning?: string;
}

/** What the client reports to its user. */
export type ClientEvent =
  | ({ kind: "dm" } & TextMessageEvent)
  | { kind: "joined"; peer: Peer }
  | { kind: "left"; peer: Peer }
  | { kind: "error"; code: string; detail: string }
  /**
   * The server ACKed a frame of ours: `messageId` names our message ({@linkcode OutgoingMessage.id}), `fileId`
   * our file (its FILE_END: the whole file was relayed); `what` says it in words.
   */
  | { kind: "ack"; msgRef: string; what?: string; messageId?: string; fileId?: string }
  | ({ kind: "public" } & TextMessageEvent)
  | { kind: "channel"; version: number }
  | {
    kind: "fileStart";
    fileId: string;
    from: string;
    fromName: string;
    name: string;
    size: number;
    mode: "dm" | "public";
    /** The sender's timestamp of FILE_START (ms). */
    ts?: number;
    /** The sender's FILE_START content_sig verified with the key presence announced for them. */
    verified?: boolean;
    /** The file waits as an offer: nothing is decrypted until the shell accepts it (`holdFiles`). */
    offer?: boolean;
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
    /** Lowercase hex SHA-256 of the bytes (when they arrived whole). */
    sha256?: string;
    /** The sender's FILE_START content_sig verified with the key presence announced for them. */
    verified: boolean;
  }
  /** Sender side: progress of a file we send (chunks written). */
  | { kind: "fileSendProgress"; fileId: string; name: string; sent: number; size: number }
  /** Sender side: a transfer of ours stopped (the server or the receiver refused it); said once per transfer. */
  | { kind: "fileRefused"; fileId: string; name: string; to: string; reason: string }
  /** A message of ours changed state. */
  | { kind: "message"; message: OutgoingMessage }
  /** A contact was learnt or changed (key pinned, mark set, change pending): the shell persists it. */
  | { kind: "contact"; contact: Contact }
  /**
   * A key other than the pinned one was presented for a contact: sending to them is blocked until the user
   * accepts it ({@linkcode ClientCore.trustKey}); `verified`: they were marked verified (a hard stop).
   */
  | {
    kind: "keyChanged";
    userId: string;
    label: string;
    oldFingerprint: string;
    newFingerprint: string;
    verified: boolean;
  }
  /** A key that derives the contact's id replaced a pin that did not (a resolved conflict, PROFILE §16). */
  | {
    kind: "keyReplaced";
    userId: string;
    label: string;
    oldFingerprint: string;
    newFingerprint: string;
    detail: string;
  }
  /** A key that does not derive a contact's self-certifying id was presented for it: ignored. */
  | {
    kind: "keyRejected";
    userId: string;
    label: string;
    fingerprint: string;
    rejectedFingerprint: string;
    detail: string;
  }
  /** The user accepted a contact's changed key. */
  | { kind: "keyTrusted"; userId: string; label: string; fingerprint: string }
  /** Our server's key pinned or changed by the user's decision: the shell persists it (per server address). */
  | { kind: "serverPin"; pin: ServerPin }
  /**
   * Our server presents another key than the one pinned at first contact (or none any more): channel keys are
   * refused until the user accepts it ({@linkcode ClientCore.trustServerKey}).
   */
  | { kind: "serverKeyChanged"; serverId: string; oldFingerprint: string; newFingerprint: string }
  /** Our server handed us a public channel key with another creator key than the pinned one. */
  | { kind: "channelKeyChanged"; oldFingerprint: string; newFingerprint: string }
  /** A delivered message was shown: the shell stores the entry (bounded) so a replay stays a copy. */
  | { kind: "seen"; entry: SeenEntry }
  /** The server accepted our hello (and the directory snapshot arrived, or did not within 1.5 s). */
  | { kind: "ready"; serverId: string }
  /** The server refused our hello: a permanent failure, not retried. */
  | { kind: "refused"; code: string; detail: string }
  | { kind: "warning"; detail: string }
  /** The connection dropped (the shell reconnects unless it was closed on purpose). */
  | { kind: "closed"; code: number; reason: string }
  /** The shell will try to reconnect in `inMs` (attempt number `attempt`). */
  | { kind: "reconnecting"; inMs: number; attempt: number; error?: string };
