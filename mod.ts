/**
 * socp as a library: the protocol layer, the reducer, crypto, the store, the node shell and the client.
 *
 * @example
 * ```ts
 * import { startNode, SocpClient } from "./mod.ts";
 * const node = await startNode({ host: "127.0.0.1", port: 0, dataDir: "./socp-data" });
 * ```
 * @module
 */
export * from "./lib/protocol/base64url.ts";
export * from "./lib/protocol/canonical_json.ts";
export * from "./lib/protocol/keys.ts";
export * from "./lib/protocol/envelope.ts";
export * from "./lib/protocol/messages.ts";
export * from "./lib/protocol/preimages.ts";
export * from "./lib/protocol/msg_ref.ts";
export { initState, reduce } from "./lib/core/reduce.ts";
export { SeenCache } from "./lib/core/dedupe.ts";
export * from "./lib/core/types.ts";
export * from "./lib/crypto/rsa.ts";
export * from "./lib/crypto/keyfile.ts";
export { Store } from "./lib/store/sqlite.ts";
export { type NodeOptions, PortInUse, type RunningNode, startNode } from "./lib/net/node.ts";
export { Logger } from "./lib/net/log.ts";
export * from "./lib/client/client.ts";
export * from "./lib/client/keyfile.ts";
export { VERSION } from "./lib/version.ts";
