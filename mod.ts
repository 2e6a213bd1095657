/**
 * socp as a library: run a node with {@linkcode startNode}, talk to one with {@linkcode SocpClient} (or drive the
 * sans-IO {@linkcode ClientCore} yourself), and make or open user keys. The wire layer and the node's reducer have
 * their own entry points: `./protocol` (lib/protocol/mod.ts) and `./core` (lib/core/mod.ts).
 *
 * @example A node and two clients exchange a direct message
 * ```ts
 * import assert from "node:assert/strict";
 * import { generateKeyPair, SocpClient, startNode } from "./mod.ts";
 *
 * const dataDir = await Deno.makeTempDir();
 * const node = await startNode({ host: "127.0.0.1", port: 0, dataDir, logLevel: "warn" });
 * const url = `ws://127.0.0.1:${node.port}`;
 * const [ka, kb] = await Promise.all([generateKeyPair(4096), generateKeyPair(4096)]);
 * const alice = await SocpClient.connect(url, { userId: crypto.randomUUID(), key: ka, displayName: "alice" });
 * const bob = await SocpClient.connect(url, { userId: crypto.randomUUID(), key: kb, displayName: "bob" });
 * // Poll with a deadline (an example that hangs helps nobody).
 * const until = async (ok: () => boolean) => {
 *   for (const end = Date.now() + 30_000; !ok(); await new Promise((r) => setTimeout(r, 20))) {
 *     if (Date.now() > end) throw new Error("timed out");
 *   }
 * };
 * const got: string[] = [];
 * bob.onEvent = (e) => {
 *   if (e.kind === "dm") got.push(`${e.fromLabel}: ${e.text}`);
 * };
 * await until(() => alice.directory.has(bob.userId)); // bob's presence reached alice
 * await alice.tell("bob", "hello");
 * await until(() => got.length > 0);
 * assert.deepEqual(got, ["alice: hello"]);
 * await alice.close();
 * await bob.close();
 * await node.close();
 * await Deno.remove(dataDir, { recursive: true });
 * ```
 * @module
 */
export { type NodeOptions, PortInUse, type RunningNode, startNode } from "./lib/net/node.ts";
export type { BootstrapEntry, FederationConfig, Limits, LogLevel } from "./lib/core/types.ts";
export { type ConnectOptions, FileStopped, HelloRefused, SocpClient } from "./lib/client/client.ts";
export {
  ClientCore,
  type CoreOptions,
  formatFingerprint,
  KeyChangedError,
  keyFingerprint,
  safetyCode,
} from "./lib/client/core.ts";
export { MemoryTrustStore, type StoredTrust, type TrustStore } from "./lib/client/store.ts";
export { WebCryptoRunner } from "./lib/client/webcrypto.ts";
export type {
  ClientEvent,
  Contact,
  CryptoOp,
  CryptoResult,
  KeyTrust,
  OutgoingMessage,
  Output,
  Peer,
  SeenEntry,
  SendState,
  ServerPin,
  TextMessageEvent,
  TrustInfo,
} from "./lib/client/types.ts";
export { generateKeyPair, PrivateKey, sha256, sha256Hex } from "./lib/crypto/rsa.ts";
export { type DecodedKey, decodePublicKey, type KeyForm, type PublicKeyInfo } from "./lib/protocol/keys.ts";
export {
  KeyFileError,
  type OpenedUserKey,
  openPrivateKey,
  openUserKeyFile,
  parseUserKeyFile,
  type SealedKey,
  sealPrivateKey,
  sealUserKeyFile,
  type UserKeyFile,
  WrongPassphrase,
} from "./lib/crypto/keyfile.ts";
export {
  createUser,
  loadOrCreateUser,
  openUser,
  readKeyFile,
  type UserIdentity,
} from "./lib/client/keyfile.ts";
export type { Envelope, MessageType, PayloadOf } from "./lib/protocol/mod.ts";
export { VERSION } from "./lib/version.ts";
