/**
 * The client core's trust rules (PROFILE §16): contacts' keys pinned at first sight and never replaced silently,
 * self-certifying ids (a key that derives its id wins over a pin that does not, never the reverse), the user's
 * "verified" mark and the safety code, our server's key pinned per address, the public channel's creator key
 * pinned, and the dedupe of delivered messages that survives a restart (the shell stores it).
 *
 * Everything here is synchronous and pure over the core's state (SHA-256 is the pure one of lib/protocol).
 *
 * @module
 */
import { decodePublicKey, sameKeyMaterial } from "../protocol/keys.ts";
import { sha256, toHex } from "../protocol/sha256.ts";
import { derivesId } from "../protocol/user_id.ts";
import type { CoreState } from "./core_state.ts";
import type { Contact, KeyTrust, SeenEntry, TrustInfo } from "./types.ts";

/** Most delivered messages remembered for the dedupe (in memory and in the shell's store). */
export const MAX_SEEN = 10_000;

/** `ab12:cd34:…`: the first 16 bytes of SHA-256 of a key's DER SPKI ("" when the key does not decode). */
export function keyFingerprint(pubkey: string): string {
  const d = decodePublicKey(pubkey);
  if (!d.ok) return "";
  return toHex(sha256(d.key.spki).subarray(0, 16)).match(/.{4}/g)!.join(":");
}

/**
 * The safety code of a conversation between the holders of two keys: 12 groups of 5 digits, the same on both
 * sides. Each key gives 6 groups (30 digits from SHA-256 of "socp-safety-code/1", a zero byte and its DER SPKI,
 * 5 bytes per group, modulo 100000, like Signal's); the two halves are written in sorted order, so both users
 * see the same code and a changed key changes its half. Empty when a key does not decode.
 */
export function safetyCode(pubA: string, pubB: string): string {
  const half = (pub: string): string | null => {
    const d = decodePublicKey(pub);
    if (!d.ok) return null;
    const tag = new TextEncoder().encode("socp-safety-code/1\0");
    const buf = new Uint8Array(tag.length + d.key.spki.length);
    buf.set(tag);
    buf.set(d.key.spki, tag.length);
    const h = sha256(buf);
    const groups: string[] = [];
    for (let i = 0; i < 6; i++) {
      let n = 0;
      for (let j = 0; j < 5; j++) n = n * 256 + h[i * 5 + j];
      groups.push(String(n % 100000).padStart(5, "0"));
    }
    return groups.join(" ");
  };
  const a = half(pubA), b = half(pubB);
  if (a === null || b === null) return "";
  return a <= b ? `${a} ${b}` : `${b} ${a}`;
}

/** How a contact's pinned key is trusted. */
export function trustOf(c: Contact): KeyTrust {
  if (c.pending) return "changed";
  if (c.verified) return "verified";
  if (derivesId(c.pubkey, c.userId)) return "derived";
  return "tofu";
}

/** What a user interface shows about a contact's key. */
export function trustInfo(s: CoreState, userId: string): TrustInfo | undefined {
  const c = s.contacts.get(userId);
  if (!c) return undefined;
  const info: TrustInfo = {
    userId,
    label: s.labelOf(userId),
    trust: trustOf(c),
    fingerprint: c.fingerprint || keyFingerprint(c.pubkey),
    derived: derivesId(c.pubkey, c.userId),
    verified: !!c.verified,
    safetyCode: safetyCode(s.publicKey, c.pubkey),
  };
  if (c.pending) {
    info.pending = {
      fingerprint: c.pending.fingerprint,
      safetyCode: safetyCode(s.publicKey, c.pending.pubkey),
      derived: derivesId(c.pending.pubkey, c.userId),
    };
  }
  return info;
}

/** Thrown when sending to a contact whose key changed and was not accepted yet. */
export class KeyChangedError extends Error {
  /** `userId` is the contact's id. */
  constructor(readonly userId: string, message: string) {
    super(message);
    this.name = "KeyChangedError";
  }
}

/**
 * The key to encrypt to for `userId`: the pinned one. Throws {@linkcode KeyChangedError} while a changed key
 * waits for the user's decision (nothing is encrypted to either key meanwhile), and an Error when no key is known.
 */
export function sendKey(s: CoreState, userId: string): string {
  if (userId === s.userId) return s.publicKey;
  const c = s.contacts.get(userId);
  if (!c) {
    throw new Error(`no public key known for ${s.labelOf(userId)} (its server does not advertise keys)`);
  }
  if (c.pending) {
    const label = s.labelOf(userId);
    throw new KeyChangedError(
      userId,
      `the key of ${label} changed (pinned ${c.fingerprint}, now presented ${c.pending.fingerprint}); nothing ` +
        `was sent. Compare the safety code with ${label} (/verify ${label}), then accept the new key ` +
        `(/trust ${label}) or keep refusing it`,
    );
  }
  return c.pubkey;
}

/** A key seen for a user (from presence, or a verified message that derives its sender's id). */
export interface SeenKey {
  userId: string;
  pubkey: string;
  fingerprint: string;
  name: string;
  serverId: string;
}

/**
 * A key presented for `k.userId`: pin it at first sight; a deriving key replaces a pin that does not derive (a
 * resolved conflict, announced); a non-deriving key never replaces a deriving pin (announced, ignored); any other
 * different key waits as `pending` (sending blocked) until {@linkcode trustKey}. Returns "pinned" (first
 * sight), "same", "replaced", "rejected" or "pending".
 */
export function learnKey(
  s: CoreState,
  k: SeenKey,
): "pinned" | "same" | "replaced" | "rejected" | "pending" {
  const old = s.contacts.get(k.userId);
  if (!old) {
    const contact: Contact = {
      userId: k.userId,
      name: k.name,
      pubkey: k.pubkey,
      fingerprint: k.fingerprint,
      serverId: k.serverId,
    };
    s.contacts.set(k.userId, contact);
    s.emit({ kind: "contact", contact });
    return "pinned";
  }
  if (sameKeyMaterial(old.pubkey, k.pubkey)) {
    let changed = false;
    const next: Contact = { ...old };
    if (old.name !== k.name) (next.name = k.name, changed = true);
    if (k.serverId && old.serverId !== k.serverId) (next.serverId = k.serverId, changed = true);
    if (old.fingerprint !== k.fingerprint) (next.fingerprint = k.fingerprint, changed = true);
    if (old.pending) {
      // The pinned key is presented again: the change is over by itself.
      delete next.pending;
      changed = true;
    }
    if (changed) {
      s.contacts.set(k.userId, next);
      s.emit({ kind: "contact", contact: next });
    }
    return "same";
  }
  const label = s.labelOf(k.userId);
  const oldDerives = derivesId(old.pubkey, old.userId);
  const newDerives = derivesId(k.pubkey, k.userId);
  if (oldDerives) {
    // Only one key derives an id: whatever else is presented for it is an impostor's.
    s.emit({
      kind: "keyRejected",
      userId: k.userId,
      label,
      fingerprint: old.fingerprint,
      rejectedFingerprint: k.fingerprint,
      detail: `a key that does not match ${label}'s self-certifying id was presented for it and ignored`,
    });
    return "rejected";
  }
  if (newDerives) {
    const next: Contact = {
      userId: k.userId,
      name: k.name,
      pubkey: k.pubkey,
      fingerprint: k.fingerprint,
      serverId: k.serverId || old.serverId,
    };
    s.contacts.set(k.userId, next);
    s.emit({ kind: "contact", contact: next });
    s.emit({
      kind: "keyReplaced",
      userId: k.userId,
      label,
      oldFingerprint: old.fingerprint,
      newFingerprint: k.fingerprint,
      detail: `${label}'s id is derived from the new key, so it replaced the old pin (a resolved conflict)`,
    });
    return "replaced";
  }
  if (old.pending && sameKeyMaterial(old.pending.pubkey, k.pubkey)) return "pending"; // said already
  const next: Contact = {
    ...old,
    pending: { pubkey: k.pubkey, fingerprint: k.fingerprint, serverId: k.serverId, name: k.name },
  };
  s.contacts.set(k.userId, next);
  s.emit({ kind: "contact", contact: next });
  s.emit({
    kind: "keyChanged",
    userId: k.userId,
    label,
    oldFingerprint: old.fingerprint,
    newFingerprint: k.fingerprint,
    verified: !!old.verified,
  });
  return "pending";
}

/**
 * Accept the changed key of a contact: it becomes the pin (the verified mark is dropped with the old key).
 * Refused for a contact marked verified: the user removes the mark first ({@linkcode setVerified} false).
 */
export function trustKey(s: CoreState, userId: string): Contact {
  const c = s.contacts.get(userId);
  const label = s.labelOf(userId);
  if (!c?.pending) throw new Error(`no changed key of ${label} waits to be accepted`);
  if (c.verified) {
    throw new Error(
      `${label} was marked verified: a verified contact's key change is a hard stop. If you are sure (you ` +
        `compared the new safety code with ${label} in person or by a call), remove the mark with ` +
        `/unverify ${label}, then /trust ${label}`,
    );
  }
  const next: Contact = {
    userId,
    name: c.pending.name || c.name,
    pubkey: c.pending.pubkey,
    fingerprint: c.pending.fingerprint,
    serverId: c.pending.serverId || c.serverId,
  };
  s.contacts.set(userId, next);
  s.emit({ kind: "contact", contact: next });
  s.emit({ kind: "keyTrusted", userId, label, fingerprint: next.fingerprint });
  return next;
}

/** Mark (or unmark) a contact verified after comparing the safety code. Refused while a changed key waits. */
export function setVerified(s: CoreState, userId: string, verified: boolean): Contact {
  const c = s.contacts.get(userId);
  const label = s.labelOf(userId);
  if (!c) throw new Error(`no key of ${label} is known yet`);
  if (verified && c.pending) {
    throw new Error(`the key of ${label} changed and was not accepted; it cannot be marked verified now`);
  }
  const next: Contact = { ...c };
  if (verified) next.verified = true;
  else delete next.verified;
  s.contacts.set(userId, next);
  s.emit({ kind: "contact", contact: next });
  return next;
}

// ---------------------------------------------------------------- dedupe of delivered messages

/** The dedupe key of a delivered message: its kind, sender and ciphertext (never envelope fields). */
export function seenKey(kind: "dm" | "all", sender: string, ciphertext: string): string {
  return toHex(sha256(`${kind}\n${sender}\n${ciphertext}`).subarray(0, 16));
}

/** Load remembered entries (oldest first) and the floor kept by the shell's store. */
export function loadSeen(s: CoreState, entries: Iterable<SeenEntry>, floor = 0): void {
  for (const e of entries) {
    if (!e || typeof e.key !== "string" || !Number.isFinite(e.ts)) continue;
    s.seen.delete(e.key);
    s.seen.set(e.key, { ts: e.ts, verified: !!e.verified });
  }
  if (Number.isFinite(floor)) s.seenFloor = Math.max(s.seenFloor, floor);
  trimSeen(s);
}

function trimSeen(s: CoreState): void {
  while (s.seen.size > MAX_SEEN) {
    const [k, v] = s.seen.entries().next().value!;
    s.seen.delete(k);
    if (v.verified) s.seenFloor = Math.max(s.seenFloor, v.ts);
  }
}

/**
 * Decide on a delivered message by its dedupe key: "new" (show it), "again" (a copy: drop), "upgrade" (an
 * earlier copy was unverified, this one verifies: show it), or "old" (verified, but dated at or before the
 * oldest thing forgotten: a late replay cannot be told from a new message, so it is dropped and said).
 */
export function judgeSeen(
  s: CoreState,
  key: string,
  ts: number,
  verified: boolean,
): "new" | "again" | "upgrade" | "old" {
  const prior = s.seen.get(key);
  if (prior) return prior.verified || !verified ? "again" : "upgrade";
  if (verified && s.seenFloor > 0 && ts <= s.seenFloor) return "old";
  return "new";
}

/** Remember a shown message (the shell stores the entry, so a replay after a restart is not shown again). */
export function rememberSeen(s: CoreState, key: string, ts: number, verified: boolean): void {
  // Dated no later than now: a sender's future date cannot raise the floor over everyone's messages.
  const entry: SeenEntry = { key, ts: Math.min(ts, s.now), verified };
  s.seen.delete(key);
  s.seen.set(key, { ts: entry.ts, verified });
  trimSeen(s);
  s.emit({ kind: "seen", entry });
}
