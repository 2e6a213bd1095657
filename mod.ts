/**
 * socp as a library: run a node with {@linkcode startNode} (on a data directory) or compose one from its parts
 * with {@linkcode createNode} (transport, store, clock, timers: in memory by default), talk to one with
 * {@linkcode SocpClient} (or drive the sans-IO {@linkcode ClientCore} yourself), and make or open user keys. The wire layer and the node's reducer have
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
 *
 * @example A node entirely in memory: no data directory, no file (the store is SQLite's `:memory:`)
 * ```ts
 * import assert from "node:assert/strict";
 * import { createNode, generateKeyPair, SocpClient } from "./mod.ts";
 *
 * // createNode does the wiring; every part has a default: the Deno transport, a store in memory, the clock.
 * const node = await createNode({ key: await generateKeyPair(4096), host: "127.0.0.1", port: 0, logLevel: "warn" });
 * const alice = await SocpClient.connect(`ws://127.0.0.1:${node.port}`, {
 *   userId: crypto.randomUUID(),
 *   key: await generateKeyPair(4096),
 *   displayName: "alice",
 * });
 * assert.equal(alice.serverId, node.serverId); // the node answered alice's hello
 * await alice.close();
 * await node.close();
 * ```
 * @module
 */
export { type NodeOptions, PortInUse, type RunningNode, startNode } from "./lib/net/node.ts";
export { createNode, type NodeActivity, type NodeParts, type NodeStore } from "./lib/net/create_node.ts";
export type { ActivityHookParts } from "./lib/net/clock.ts";
export type {
  Accept,
  DialHandlers,
  Handler,
  Listener,
  ListenOptions,
  Socket,
  Transport,
} from "./lib/net/transport.ts";
export type { StoreLike, Timers } from "./lib/net/executor.ts";
export type {
  BootstrapEntry,
  FederationConfig,
  Limits,
  Loaded,
  LogLevel,
  ServerRecord,
  UserRecord,
} from "./lib/core/types.ts";
export { type ConnectOptions, FileStopped, HelloRefused, SocpClient } from "./lib/client/client.ts";
export {
  ClientCore,
  type CoreOptions,
  formatFingerprint,
  KeyChangedError,
  keyFingerprint,
  safetyCode,
  type ServerLimits,
} from "./lib/client/core.ts";
export { MemoryTrustStore, type StoredTrust, type TrustStore } from "./lib/client/store.ts";
export { type WebCryptoOptions, WebCryptoRunner } from "./lib/client/webcrypto.ts";
export type {
  ClientEvent,
  Contact,
  CryptoOp,
  CryptoResult,
  CryptoRunner,
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
  type RandomKey,
  type SealedKey,
  sealPrivateKey,
  type SealSecret,
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
