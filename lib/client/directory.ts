/**
 * The client core's directory: contacts kept from earlier sessions (with their pinned keys), who is online
 * (presence adverts), how users are labelled and found by name.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { decodePublicKey, sameKeyMaterial } from "../protocol/keys.ts";
import { derivesId } from "../protocol/user_id.ts";
import { type CoreState, hex } from "./core_state.ts";
import { becomeReady } from "./outgoing.ts";
import { keyFingerprint, learnKey, trustOf } from "./trust.ts";
import type { Contact, Peer } from "./types.ts";

/** `ab12:cd34:…` from a SHA-256 digest (its first 16 bytes), as the node prints its own. */
export function formatFingerprint(digest: Uint8Array): string {
  return hex(digest.subarray(0, 16)).match(/.{4}/g)!.join(":");
}

/** Contacts (pins) the shell kept from earlier sessions. */
export function addContacts(s: CoreState, list: Iterable<Contact>): void {
  for (const c of list) {
    if (!c || typeof c.userId !== "string" || typeof c.pubkey !== "string" || !decodePublicKey(c.pubkey).ok) {
      continue;
    }
    if (c.userId === s.userId || s.contacts.has(c.userId)) continue;
    const contact: Contact = {
      userId: c.userId,
      name: String(c.name ?? c.userId),
      pubkey: c.pubkey,
      fingerprint: keyFingerprint(c.pubkey),
      serverId: String(c.serverId ?? ""),
    };
    if (c.verified === true) contact.verified = true;
    const p = c.pending;
    if (
      p && typeof p.pubkey === "string" && decodePublicKey(p.pubkey).ok &&
      !sameKeyMaterial(p.pubkey, c.pubkey)
    ) {
      contact.pending = {
        pubkey: p.pubkey,
        fingerprint: keyFingerprint(p.pubkey),
        serverId: String(p.serverId ?? ""),
        name: String(p.name ?? contact.name),
      };
    }
    s.contacts.set(c.userId, contact);
  }
}

/** The online users, sorted by display label then user id (PROFILE §6). */
export function list(s: CoreState): Peer[] {
  return [...s.directory.values()].map((p) => ({ ...p, label: s.labelOf(p.userId), trust: peerTrust(s, p) }))
    .sort((
      a,
      b,
    ) => a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
}

/**
 * Find a user by id, `name#abcd` label, or display name (case-insensitive): online users first, then contacts.
 * Throws with a message for the user when there is none or more than one.
 */
export function resolve(s: CoreState, target: string): Contact & { online: boolean; label: string } {
  const t = target.trim();
  const found = (c: Contact) => {
    const pin = s.contacts.get(c.userId); // the pinned key, never the one presence announced last
    return {
      ...c,
      pubkey: pin?.pubkey ?? c.pubkey,
      fingerprint: pin?.fingerprint ?? c.fingerprint,
      online: s.directory.has(c.userId),
      label: s.labelOf(c.userId),
    };
  };
  const byId = s.directory.get(t) ?? s.contacts.get(t);
  if (byId) return found(byId);
  const hash = t.lastIndexOf("#");
  for (const pool of [s.directory, s.contacts]) {
    let matches = [...pool.values()].filter((p) => p.name.toLowerCase() === t.toLowerCase());
    if (matches.length === 0 && hash > 0) {
      const name = t.slice(0, hash).toLowerCase();
      const fp = t.slice(hash + 1).toLowerCase();
      matches = [...pool.values()].filter((p) =>
        p.name.toLowerCase() === name && fp.length > 0 &&
        (p.fingerprint.replace(/:/g, "").startsWith(fp) || p.userId.toLowerCase().startsWith(fp))
      );
    }
    if (matches.length === 1) return found(matches[0]);
    if (matches.length > 1) {
      throw new Error(
        `"${t}" is ambiguous: ${matches.map((m) => s.labelOf(m.userId)).join(", ")}; use one of these`,
      );
    }
  }
  throw new Error(`no user "${t}" has been seen online (see /list)`);
}

/** A presence advert: update the directory, and pin the key (PROFILE §16: never replaced silently). */
export function onAdvertise(s: CoreState, env: Envelope<"USER_ADVERTISE">, sigOk: boolean): void {
  const p = env.payload;
  const pubkey = p.pubkey ?? (typeof p.meta?.pubkey === "string" ? p.meta.pubkey : "");
  const name = typeof p.meta?.display_name === "string" && p.meta.display_name
    ? p.meta.display_name.slice(0, 128)
    : p.user_id;
  const d = pubkey ? decodePublicKey(pubkey) : null;
  const fingerprint = d?.ok ? keyFingerprint(pubkey) : "";
  const peer: Peer = {
    userId: p.user_id,
    serverId: p.server_id,
    name,
    label: name,
    pubkey: d?.ok ? pubkey : "",
    fingerprint,
    verified: sigOk,
    trust: "none",
  };
  const had = s.directory.has(p.user_id);
  s.directory.set(p.user_id, peer);
  if (p.user_id === s.userId) {
    if (peer.pubkey && !sameKeyMaterial(peer.pubkey, s.publicKey)) {
      s.emit({
        kind: "warning",
        detail: `the server advertises YOUR user id with another key (${fingerprint}): someone may be ` +
          "impersonating you",
      });
    }
  } else if (peer.pubkey) {
    learnKey(s, { userId: p.user_id, pubkey: peer.pubkey, fingerprint, name, serverId: p.server_id });
  }
  peer.trust = peerTrust(s, peer);
  peer.label = s.labelOf(p.user_id);
  if (!had) s.emit({ kind: "joined", peer });
  if (p.user_id === s.userId && s.phase === "online") becomeReady(s);
}

/** How far the key presence announced for a peer is trusted (see `Peer.trust`). */
export function peerTrust(s: CoreState, peer: Peer): Peer["trust"] {
  if (!peer.pubkey) return "none";
  if (peer.userId === s.userId) {
    return sameKeyMaterial(peer.pubkey, s.publicKey)
      ? (derivesId(s.publicKey, s.userId) ? "derived" : "tofu")
      : "changed";
  }
  const c = s.contacts.get(peer.userId);
  if (!c || !sameKeyMaterial(c.pubkey, peer.pubkey)) return "changed";
  return trustOf(c);
}
