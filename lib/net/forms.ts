/**
 * PROFILE §15 spaced preimage, the shell's memory of it: which forms each peer key's signatures verified in (by
 * DER SPKI, bounded to 4,096 keys, least recently seen dropped first). A peer seen signing only in the spaced
 * form gets our frames signed spaced; one seen signing canonically (too) gets canonical ones.
 *
 * @example
 * ```ts ignore
 * const forms = new PeerForms();
 * forms.verified(key, "spaced");
 * forms.spaced(key); // true
 * ```
 * @module
 */
import type { State } from "../core/types.ts";
import type { PreimageForm } from "../protocol/canonical_json.ts";
import { encodeBase64Url } from "../protocol/base64url.ts";
import { decodePublicKey } from "../protocol/keys.ts";

const BOUND = 4096;

/** Signature forms seen per peer key. */
export class PeerForms {
  readonly #forms = new Map<string, { canonical: boolean; spaced: boolean }>();
  readonly #spkiOf = new Map<string, string>();

  /** A signature by `key` verified in `form`. */
  verified(key: string, form: PreimageForm): void {
    if (form === "either") return; // `{}`: the same bytes in both forms, says nothing
    const k = this.#spki(key);
    const f = this.#forms.get(k) ?? { canonical: false, spaced: false };
    if (form === "spaced") f.spaced = true;
    else f.canonical = true;
    this.#forms.delete(k);
    this.#forms.set(k, f);
    if (this.#forms.size > BOUND) this.#forms.delete(this.#forms.keys().next().value!);
  }

  /** Sign for `key` in the spaced form: its signatures verified only in that form. */
  spaced(key: string | undefined): boolean {
    if (this.#forms.size === 0 || key === undefined) return false;
    const f = this.#forms.get(this.#spki(key));
    return f !== undefined && f.spaced && !f.canonical;
  }

  /** The same key in any of its encodings: its DER SPKI. */
  #spki(key: string): string {
    let k = this.#spkiOf.get(key);
    if (k === undefined) {
      const d = decodePublicKey(key);
      k = d.ok ? encodeBase64Url(d.key.spki) : key;
      if (this.#spkiOf.size >= BOUND) this.#spkiOf.delete(this.#spkiOf.keys().next().value!);
      this.#spkiOf.set(key, k);
    }
    return k;
  }
}

/** The key of the peer at the other end of `conn`, as the reducer knows it. */
export function peerKey(state: State, conn: number): string | undefined {
  const c = state.conns.get(conn);
  if (!c) return undefined;
  if (c.role === "user") return c.userId ? state.users.get(c.userId)?.pubkey : undefined;
  const sid = c.serverId ?? c.dial?.serverId;
  return (sid ? state.servers.get(sid)?.pubkey : undefined) ?? c.dial?.expectKey;
}
