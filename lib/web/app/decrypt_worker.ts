/// <reference lib="webworker" />
/**
 * A Web Worker that runs RSA-OAEP decryptions (bundled into /decrypt-worker.js). Chromium runs a page's WebCrypto
 * operations one at a time; several workers use several cores. The key arrives as a CryptoKey (structured clone;
 * a non-extractable key stays non-extractable), once per key id.
 *
 * Request: `{ id, keyId, key?, block }` (block: one ciphertext block). Reply: `{ id, ok, data? }`.
 *
 * @module
 */
const keys = new Map<number, CryptoKey>();

self.onmessage = async (e: MessageEvent) => {
  const { id, keyId, key, block } = e.data as {
    id: number;
    keyId: number;
    key?: CryptoKey;
    block: ArrayBuffer;
  };
  if (key) keys.set(keyId, key);
  const k = keys.get(keyId);
  try {
    if (!k) throw new Error("unknown key");
    const data = await crypto.subtle.decrypt({ name: "RSA-OAEP" }, k, block);
    (self as unknown as Worker).postMessage({ id, ok: true, data }, [data]);
  } catch {
    (self as unknown as Worker).postMessage({ id, ok: false });
  }
};
