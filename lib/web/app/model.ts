/**
 * The web app's model: conversations, messages (with their send state and files) and people, as the session
 * builds them and the view shows them; and small helpers both use.
 *
 * @module
 */
import type { OutgoingMessage } from "../../client/client.ts";

/** The public channel's conversation id. */
export const PUBLIC = "public";

/** What a message's sender-side state is (the client core's). */
export type MsgState = OutgoingMessage["state"];

/** A file attached to a message. */
export interface FileItem {
  fileId: string;
  name: string;
  size: number;
  /** Bytes encrypted and sent, or received and decrypted. */
  done: number;
  /** `offered`: arriving, kept encrypted until the user accepts it; `declined`: dropped undecrypted. */
  phase: "offered" | "sending" | "receiving" | "complete" | "failed" | "declined";
  /** Hex SHA-256 of the received bytes (checked against the sender's announcement). */
  sha256?: string;
  /** The received bytes (in memory; shared with the other tabs; not part of the stored record). */
  blob?: Blob;
  /** The received bytes are kept (encrypted) in this browser's history. */
  kept?: boolean;
  /** They were kept, and evicted to stay within the history's file quota. */
  evicted?: boolean;
  problem?: string;
}

/** One line of a conversation. */
export interface ChatMessage {
  id: string;
  conv: string;
  dir: "in" | "out" | "note";
  from: string;
  fromName: string;
  text: string;
  ts: number;
  state?: MsgState;
  detail?: string;
  verified?: boolean;
  warning?: string;
  unencrypted?: boolean;
  file?: FileItem;
  /** A note's kind ("key-changed", "key-warning", "channel-key"), for how it is shown. */
  kind?: string;
}

/** A conversation: a DM with one user, or the public channel. */
export interface Conversation {
  id: string;
  messages: ChatMessage[];
  unread: number;
}

/** Connection status for the header. */
export type LinkStatus =
  | { kind: "connecting"; attempt: number }
  | { kind: "online" }
  | { kind: "offline"; retryAt: number; reason: string }
  | { kind: "refused"; reason: string }
  /** The identity is connected from another device or browser (or a newer session took over). */
  | { kind: "elsewhere"; reason: string };

/** What the app shows about a contact's key (the client core's trust rules, PROFILE §16). */
export interface TrustView {
  /** "derived" (the id is made from the key), "verified" (marked after comparing the safety code), "tofu"
   * (pinned at first sight), "changed" (another key presented: sending is blocked until accepted). */
  trust: "derived" | "verified" | "tofu" | "changed";
  /** Fingerprint of the pinned key. */
  fingerprint: string;
  derived: boolean;
  /** Marked verified by the user. */
  verified: boolean;
  /** The conversation's safety code (the same on both sides). */
  safetyCode: string;
  /** A different key presented and not accepted yet. */
  pending?: { fingerprint: string; safetyCode: string; derived: boolean };
}

/** A person as the app shows them. */
export interface Person {
  userId: string;
  name: string;
  /** `name`, or `name#abcd` when someone else known has the same name. */
  label: string;
  serverId: string;
  pubkey: string;
  online: boolean;
  /** "abcd:ef01:…" (SHA-256 of the key, first 16 bytes). */
  fingerprint: string;
}

/** Our server's and the public channel's keys, as the app shows them. */
export interface KeysView {
  /** Fingerprint of the server's pinned key ("" before). */
  server: string;
  /** Fingerprint of a different key our server presents now, not accepted yet ("" when none). */
  serverPending: string;
  /** Fingerprint of the public channel's key ("" before it arrived). */
  channel: string;
}

/** What the leader tab tells the others about people and keys. */
export interface PeopleSnapshot {
  people: Person[];
  labels: Record<string, string>;
  serverId: string;
  trust: Record<string, TrustView>;
  keys: KeysView;
}

/** Insert `m` into `list` by its `ts` (after messages with the same time). */
export function insertSorted(list: ChatMessage[], m: ChatMessage): void {
  let i = list.length;
  while (i > 0 && list[i - 1].ts > m.ts) i--;
  list.splice(i, 0, m);
}

/** What a message's send state means, for the user. */
export function describe(o: OutgoingMessage): string {
  switch (o.state) {
    case "sending":
      return "not on the wire yet: it goes out when connected";
    case "sent":
      return o.kind === "public" ? "sent to everyone" : "written to the server for a recipient online now";
    case "accepted":
      return o.recipientOffline
        ? "accepted: queued by the server until they come online"
        : "accepted by the server";
    case "failed":
      return "not sent";
  }
}

/** The text of the countdown `retryAt - now` ms before the next attempt ("" when none is scheduled). */
export function retryText(retryAt: number, now: number): string {
  if (!retryAt) return "";
  const s = Math.ceil((retryAt - now) / 1000);
  return s > 0 ? ` Trying again in ${s} s.` : " Trying again now…";
}

/** Milliseconds until {@linkcode retryText} changes (null: it never does). */
export function nextChangeIn(retryAt: number, now: number): number | null {
  const left = retryAt - now;
  if (!retryAt || left <= 0) return null;
  return left - (Math.ceil(left / 1000) - 1) * 1000;
}

/** SHA-256 fingerprint of an SPKI, "abcd:ef01:…" (16 bytes), as the node shows its own. */
export async function fingerprintOf(spki: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(spki)));
  return [...h.subarray(0, 16)].map((b) => b.toString(16).padStart(2, "0")).join("").match(/.{4}/g)!.join(
    ":",
  );
}
