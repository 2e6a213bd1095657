/**
 * Runs the client core's crypto requests with WebCrypto (Deno and browsers alike): our key signs and decrypts,
 * the public channel's key is kept here once a key share opened it. RSA decryptions may be handed elsewhere (the
 * web app runs them in Web Workers) with the `decrypt` option.
 *
 * @module
 */
import { encryptTo, PrivateKey, sha256, verifyAny } from "../crypto/rsa.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import type { CryptoOp, CryptoResult, CryptoRunner } from "./types.ts";

/** Options of a {@linkcode WebCryptoRunner}. */
export interface WebCryptoOptions {
  /** Called with the public channel's key once a key share opened it. */
  onChannelKey?: (key: PrivateKey) => void;
  /**
   * Decrypt `ciphertext` (multi-block OAEP, base64url) with `key` (ours or the channel's); default `key.decrypt`.
   * The web app gives one that runs the blocks in Web Workers.
   */
  decrypt?: (key: PrivateKey, ciphertext: string) => Promise<Uint8Array>;
}

/** Carries out {@linkcode CryptoOp}s; failures become the op's "no" value (null, -1, false), never a throw. */
export class WebCryptoRunner implements CryptoRunner {
  /** The public channel's private key, once opened. */
  channelKey: PrivateKey | null = null;
  private readonly opts: WebCryptoOptions;

  /**
   * A runner that signs and decrypts with the user's `key`. `opts` may be the options, or (as before) just the
   * function that sees the channel key once opened.
   */
  constructor(private readonly key: PrivateKey, opts?: WebCryptoOptions | ((k: PrivateKey) => void)) {
    this.opts = typeof opts === "function" ? { onChannelKey: opts } : (opts ?? {});
  }

  /** Decrypt with `k` (through the `decrypt` option when given). */
  private decrypt(k: PrivateKey, ciphertext: string): Promise<Uint8Array> {
    return this.opts.decrypt ? this.opts.decrypt(k, ciphertext) : k.decrypt(ciphertext);
  }

  /** The result of `op` (see {@linkcode CryptoOp} for each result type). */
  async run(op: CryptoOp): Promise<CryptoResult> {
    switch (op.op) {
      case "verify":
        return await verifyAny(op.key, op.preimages, op.sig).catch(() => -1);
      case "decrypt": {
        const k = op.with === "user" ? this.key : this.channelKey;
        if (!k) return null;
        return await this.decrypt(k, op.ciphertext).catch(() => null);
      }
      case "encrypt":
        return await encryptTo(op.key, op.data).catch(() => null);
      case "sign":
        return await this.key.sign(op.data).catch(() => null);
      case "sha256":
        return await sha256(op.data);
      case "openChannelKey":
        try {
          const k = await PrivateKey.fromPkcs8(await this.key.decrypt(op.wrapped), { extractable: false });
          if (!sameKeyMaterial(k.publicKey, op.creatorPub)) return false;
          this.channelKey = k;
          this.opts.onChannelKey?.(k);
          return true;
        } catch {
          return false;
        }
      case "all":
        return await Promise.all(op.ops.map((o) => this.run(o)));
    }
  }
}
