/**
 * The terminal history's records at rest: what a record holds (a message, a new state of one of ours, or how far
 * a conversation was read), the check of a decrypted record's shape, and the sealing. The history key is a
 * random AES-256 key, RSA-OAEP-wrapped to the user's own public key in `key.json`; each record is
 * `base64url(iv ‖ AES-256-GCM(json))` with a random 96-bit IV, the additional data binding it to the format and
 * the user id.
 *
 * @module
 */
import { join } from "node:path";
import { decodeBase64Url, encodeBase64Url } from "../protocol/base64url.ts";
import { encryptTo, type PrivateKey } from "../crypto/rsa.ts";

/** The longest line read back (a sealed record of a 64 KiB text fits easily). */
const MAX_LINE = 1 << 20;
const KEY_FORMAT = "socp-history-key/1";
const RECORD_FORMAT = "socp-history/1";

/** A file in a history record. */
export interface FileRecord {
  name: string;
  size: number;
  sha256?: string;
  /** Where it was saved (received files). */
  saved?: string;
  /** Why it was refused, if it was. */
  problem?: string;
}

/** One message of a conversation. */
export interface HistoryMessage {
  /** Local id (the client's message id for ours). */
  id: string;
  /** The conversation: the other user's id, or "public". */
  conv: string;
  /** How the conversation is shown (the other user's label, or "all"). */
  convLabel: string;
  /** The original send time (ms). */
  ts: number;
  dir: "in" | "out";
  /** Sender user id and label. */
  from: string;
  fromLabel: string;
  text?: string;
  file?: FileRecord;
  /** The sender's signature verified (always true for ours). */
  verified: boolean;
  /** Ours: sending | sent | accepted | failed; theirs: received. */
  state: string;
  unencrypted?: boolean;
}
/** One record of the log. */
export type Line =
  | { t: "m"; m: HistoryMessage }
  | { t: "s"; id: string; conv: string; state: string }
  | { t: "r"; conv: string; ts: number };
function str(v: unknown, max = 1 << 16): v is string {
  return typeof v === "string" && v.length <= max;
}

/** Check a decrypted record's shape (the file is ours, but a bug or an old format must not crash the chat). */
export function parseLine(v: unknown): Line | null {
  if (!v || typeof v !== "object") return null;
  const o = v as Record<string, unknown>;
  if (o.t === "r" && str(o.conv, 200) && typeof o.ts === "number") return o as Line;
  if (o.t === "s" && str(o.id, 200) && str(o.conv, 200) && str(o.state, 20)) return o as Line;
  if (o.t !== "m" || !o.m || typeof o.m !== "object") return null;
  const m = o.m as Record<string, unknown>;
  if (
    !str(m.id, 200) || !str(m.conv, 200) || !str(m.convLabel, 1000) || typeof m.ts !== "number" ||
    (m.dir !== "in" && m.dir !== "out") || !str(m.from, 200) || !str(m.fromLabel, 1000) ||
    typeof m.verified !== "boolean" || !str(m.state, 20) || (m.text !== undefined && !str(m.text, 1 << 20))
  ) return null;
  if (m.file !== undefined) {
    const f = m.file as Record<string, unknown>;
    if (!f || typeof f !== "object" || !str(f.name, 1000) || typeof f.size !== "number") return null;
  }
  return o as Line;
}
/** The history key of one user: seals and opens the records of the log. */
export class RecordSeal {
  private readonly aad: Uint8Array<ArrayBuffer>;

  private constructor(userId: string, private readonly key: CryptoKey) {
    this.aad = new TextEncoder().encode(`${RECORD_FORMAT}\n${userId}`);
  }

  /**
   * The history key in `dir` for `userId`, unwrapped with `privateKey`; a new one (and no log) when there is
   * none. Throws when a history key exists that this identity cannot open (the file is left as it is).
   */
  static async open(dir: string, userId: string, privateKey: PrivateKey): Promise<RecordSeal> {
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await Deno.chmod(dir, 0o700).catch(() => {});
    const path = join(dir, "key.json");
    let text: string | undefined;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (text !== undefined) {
      let raw: Uint8Array<ArrayBuffer>;
      try {
        const v = JSON.parse(text);
        if (v?.format !== KEY_FORMAT || v.userId !== userId || typeof v.wrapped !== "string") throw 0;
        raw = new Uint8Array(await privateKey.decrypt(v.wrapped));
        if (raw.length !== 32) throw 0;
      } catch {
        throw new Error(
          `${path} is not a history key of this identity (the history there is left untouched)`,
        );
      }
      return new RecordSeal(
        userId,
        await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]),
      );
    }
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const wrapped = await encryptTo(privateKey.publicKey, raw);
    const file = JSON.stringify({ format: KEY_FORMAT, userId, wrapped }) + "\n";
    // A log without its key cannot be read again: start a new one.
    await Deno.remove(join(dir, "history.log")).catch(() => {});
    await Deno.writeTextFile(path, file, { mode: 0o600, createNew: true });
    const k = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
    raw.fill(0);
    return new RecordSeal(userId, k);
  }

  /** One record as a line of the log. */
  async seal(line: Line): Promise<string> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: this.aad },
        this.key,
        new TextEncoder().encode(JSON.stringify(line)),
      ),
    );
    const out = new Uint8Array(12 + ct.length);
    out.set(iv);
    out.set(ct, 12);
    return encodeBase64Url(out);
  }

  /** A line of the log as a record (null when it does not open or is not a record). */
  async unseal(text: string): Promise<Line | null> {
    if (text.length > MAX_LINE) return null;
    const decoded = decodeBase64Url(text);
    if (!decoded || decoded.length < 12 + 16) return null;
    const bytes = new Uint8Array(decoded);
    try {
      const pt = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: bytes.subarray(0, 12), additionalData: this.aad },
        this.key,
        bytes.subarray(12),
      );
      return parseLine(JSON.parse(new TextDecoder().decode(pt)));
    } catch {
      return null;
    }
  }
}
