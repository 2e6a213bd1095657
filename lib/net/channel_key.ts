/**
 * The public channel's private key in the shell (PROFILE §8): created by the first server of a network, adopted
 * from a wrapped copy by the others, sealed at rest, and used to fill in the channel-key crypto of frames the
 * reducer marks with a {@linkcode Seal}.
 *
 * @example
 * ```ts ignore
 * const ck = new ChannelKeyHolder({ key, secret, store, write, dispatch, log, now: Date.now }, null);
 * ck.create(); // the reducer asked (createChannel); channelReady or channelFailed follows
 * ```
 * @module
 */
import type { Event, Seal } from "../core/types.ts";
import { encryptTo, generateKeyPair, PrivateKey } from "../crypto/rsa.ts";
import { type SealedKey, sealPrivateKey, type SealSecret } from "../crypto/keyfile.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { keySharePreimage } from "../protocol/preimages.ts";
import type { Logger } from "./log.ts";
import type { Write } from "./ports.ts";

/** What the channel key needs from the node. */
export interface ChannelKeyContext {
  /** The server's identity key (opens a wrapped channel key). */
  key: PrivateKey;
  /** What seals the channel key at rest (a passphrase, or the node's random key). */
  secret: SealSecret;
  /** Where the sealed key and the channel row are kept. */
  store: {
    /** Keep the channel's private key, sealed. */
    setChannelKey(creatorPub: string, sealed: SealedKey): void;
    /** Record the public channel's version and creator key. */
    setChannel(version: number, creatorPub: string, now: number): void;
  };
  /**
   * The executor's crash-only store writes (lib/net/persist.ts's `CrashOnlyWrites`): a failed write stops the
   * node, and nothing is written after one, this key included.
   */
  write: Write;
  /** Hand an event to the reducer (`channelReady`, `channelFailed`). */
  dispatch(ev: Event): void;
  /** Where it logs. */
  log: Logger;
  /** The clock. */
  now(): number;
  /** Makes the key a first server creates (default RSA-4096, PROFILE §8). */
  generate?: () => Promise<PrivateKey>;
}

/** Holds the channel key (when this node has it) and carries out `createChannel`/`adoptChannel`. */
export class ChannelKeyHolder {
  /** True until the node has started: a key created meanwhile holds new connections back. */
  private starting = true;
  private creating: Promise<void> | undefined;

  /** Start from the key the node already holds, if any. */
  constructor(private readonly ctx: ChannelKeyContext, private key: PrivateKey | null) {}

  /** While a first server creates its key at start: resolves once it exists (PROFILE §8). */
  pending(): Promise<void> | undefined {
    return this.creating;
  }

  /** Start is over: a key created from now on does not hold connections back. */
  started(): void {
    this.starting = false;
  }

  /** Create the channel key (version 1); the reducer hears `channelReady` or `channelFailed`. */
  create(): void {
    const { log, dispatch, now } = this.ctx;
    const generate = this.ctx.generate ?? (() => generateKeyPair(4096));
    const creating = generate().then((key) => this.keep(key, 1)).then(
      (kept) => void (kept && log.info("channel.created", { version: 1 })),
      (e) => dispatch({ kind: "channelFailed", now: now(), reason: String(e) }),
    );
    if (this.starting) this.creating = creating.finally(() => this.creating = undefined);
  }

  /** Adopt a channel key wrapped for us; it must match `creatorPub`. */
  adopt(version: number, creatorPub: string, wrappedKey: string): void {
    const { log, dispatch, now } = this.ctx;
    this.ctx.key.decrypt(wrappedKey)
      .then((pkcs8) => PrivateKey.fromPkcs8(pkcs8))
      .then((key) => {
        if (!sameKeyMaterial(key.publicKey, creatorPub)) {
          throw new Error("the wrapped channel key does not match creator_pub");
        }
        return this.keep(key, version);
      })
      .then(
        (kept) => void (kept && log.info("channel.adopted", { version })),
        (e) => dispatch({ kind: "channelFailed", now: now(), reason: String(e) }),
      );
  }

  /** Fill in a frame's channel-key crypto (PROFILE §8); false when this node holds no channel key. */
  async seal(frame: Envelope, seal: Seal): Promise<boolean> {
    const channelKey = this.key;
    if (!channelKey) return false;
    const wrapped = await encryptTo(seal.forKey, await channelKey.exportPkcs8());
    const p = structuredClone(frame.payload) as Record<string, unknown>;
    if (seal.kind === "welcome") (p.public_channel as Record<string, unknown>).wrapped_key = wrapped;
    else if (seal.kind === "updated") (p.wraps as Record<string, unknown>[])[0].wrapped_key = wrapped;
    else {
      (p.shares as Record<string, unknown>[])[0].wrapped_public_channel_key = wrapped;
      p.content_sig = await channelKey.sign(keySharePreimage(p.shares, p.creator_pub as string));
    }
    frame.payload = p as typeof frame.payload;
    return true;
  }

  /**
   * Seal and keep a channel key (the `channel_key` row and the `groups` row, through the crash-only writes), then
   * tell the reducer. When a write fails the node is stopping: the key is not used and the reducer hears nothing
   * (it would claim a key the disk does not hold).
   */
  private async keep(key: PrivateKey, version: number): Promise<boolean> {
    const { store, secret, dispatch, now, write } = this.ctx;
    const sealed = await sealPrivateKey(await key.exportPkcs8(), secret);
    if (!write(() => store.setChannelKey(key.publicKey, sealed))) return false;
    if (!write(() => store.setChannel(version, key.publicKey, now()))) return false;
    this.key = key;
    dispatch({ kind: "channelReady", now: now(), version, creatorPub: key.publicKey });
    return true;
  }
}
