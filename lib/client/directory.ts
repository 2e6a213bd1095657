/**
 * The client core's directory: contacts kept from earlier sessions, who is online (presence adverts), how users are labelled and found by name.
 *
 * @module
 */
import type { Envelope } from "../protocol/envelope.ts";
import { decodePublicKey } from "../protocol/keys.ts";
import { type CoreState, hex, type Task } from "./core_state.ts";
import { becomeReady } from "./outgoing.ts";
import type { Contact, Peer } from "./types.ts";

/** `ab12:cd34:…` from a SHA-256 digest (its first 16 bytes), as the node prints its own. */
export function formatFingerprint(digest: Uint8Array): string {
  return hex(digest.subarray(0, 16)).match(/.{4}/g)!.join(":");
}

/** Contacts the shell kept from earlier sessions. */
export function addContacts(s: CoreState, list: Iterable<Contact>): void {
  for (const c of list) {
    if (!c || typeof c.userId !== "string" || typeof c.pubkey !== "string") continue;
    if (!s.contacts.has(c.userId)) {
      s.contacts.set(c.userId, {
        userId: c.userId,
        name: String(c.name ?? c.userId),
        pubkey: c.pubkey,
        fingerprint: String(c.fingerprint ?? ""),
        serverId: String(c.serverId ?? ""),
      });
    }
  }
}

/** The online users, sorted by display label then user id (PROFILE §6). */
export function list(s: CoreState): Peer[] {
  return [...s.directory.values()].map((p) => ({ ...p, label: s.labelOf(p.userId) })).sort((a, b) =>
    a.name.localeCompare(b.name) || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)
  );
}

/**
 * Find a user by id, `name#abcd` label, or display name (case-insensitive): online users first, then contacts.
 * Throws with a message for the user when there is none or more than one.
 */
export function resolve(s: CoreState, target: string): Contact & { online: boolean; label: string } {
  const t = target.trim();
  const found = (c: Contact) => ({
    ...c,
    online: s.directory.has(c.userId),
    label: s.labelOf(c.userId),
  });
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

/** A presence advert: update the directory and contacts. */
export function* onAdvertise(s: CoreState, env: Envelope<"USER_ADVERTISE">, sigOk: boolean): Task {
  const p = env.payload;
  const pubkey = p.pubkey ?? (typeof p.meta?.pubkey === "string" ? p.meta.pubkey : "");
  const name = typeof p.meta?.display_name === "string" && p.meta.display_name
    ? p.meta.display_name.slice(0, 128)
    : p.user_id;
  let fingerprint = "";
  const d = pubkey ? decodePublicKey(pubkey) : null;
  if (d?.ok) fingerprint = formatFingerprint((yield { op: "sha256", data: d.key.spki }) as Uint8Array);
  const peer: Peer = {
    userId: p.user_id,
    serverId: p.server_id,
    name,
    label: name,
    pubkey: d?.ok ? pubkey : "",
    fingerprint,
    verified: sigOk,
  };
  const had = s.directory.has(p.user_id);
  s.directory.set(p.user_id, peer);
  peer.label = s.labelOf(p.user_id);
  if (p.user_id !== s.userId && peer.pubkey) {
    const old = s.contacts.get(p.user_id);
    const contact: Contact = {
      userId: p.user_id,
      name,
      pubkey: peer.pubkey,
      fingerprint,
      serverId: p.server_id,
    };
    if (
      !old || old.name !== name || old.pubkey !== contact.pubkey || old.serverId !== contact.serverId ||
      old.fingerprint !== fingerprint
    ) {
      s.contacts.set(p.user_id, contact);
      s.emit({ kind: "contact", contact });
    }
  }
  if (!had) s.emit({ kind: "joined", peer });
  if (p.user_id === s.userId && s.phase === "online") becomeReady(s);
}
