/**
 * Runs the client core's crypto requests with WebCrypto (Deno and browsers alike): our key signs and decrypts,
 * the public channel's key is kept here once a key share opened it.
 *
 * @module
 */
import { encryptTo, PrivateKey, sha256, verifyAny } from "../crypto/rsa.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import type { CryptoOp, CryptoResult } from "./types.ts";

/** Carries out {@linkcode CryptoOp}s; failures become the op's "no" value (null, -1, false), never a throw. */
export class WebCryptoRunner {
  /** The public channel's private key, once opened. */
  channelKey: PrivateKey | null = null;

  /** A runner that signs and decrypts with the user's `key`; `onChannelKey` sees the channel key once opened. */
  constructor(private readonly key: PrivateKey, private readonly onChannelKey?: (k: PrivateKey) => void) {}

  /** The result of `op` (see {@linkcode CryptoOp} for each result type). */
  async run(op: CryptoOp): Promise<CryptoResult> {
    switch (op.op) {
      case "verify":
        return await verifyAny(op.key, op.preimages, op.sig).catch(() => -1);
      case "decrypt": {
        const k = op.with === "user" ? this.key : this.channelKey;
        if (!k) return null;
        return await k.decrypt(op.ciphertext).catch(() => null);
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
          this.onChannelKey?.(k);
          return true;
        } catch {
          return false;
        }
      case "all":
        return await Promise.all(op.ops.map((o) => this.run(o)));
    }
  }
}
