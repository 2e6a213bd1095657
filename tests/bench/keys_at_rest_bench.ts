/**
 * What opening a node's sealed key costs at start: PBKDF2-SHA-256 (600,000 iterations, a passphrase) against
 * HKDF-SHA-256 (the random key the node writes to node.secret). A node opens two keys at every start (its
 * identity and, when it holds it, the public channel's). Run with `deno task bench`.
 */
import { openPrivateKey, sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { fixtureKey, TEST_NODE_SECRET } from "../helpers/keys.ts";

const pkcs8 = await (await fixtureKey("node1")).exportPkcs8();
const underPassphrase = await sealPrivateKey(pkcs8, "a passphrase someone chose");
const underRandomKey = await sealPrivateKey(pkcs8, TEST_NODE_SECRET);

Deno.bench("open a node key sealed under a passphrase (PBKDF2, 600,000 iterations)", {
  group: "open",
  baseline: true,
}, async () => {
  await openPrivateKey(underPassphrase, "a passphrase someone chose");
});
Deno.bench("open a node key sealed under node.secret (HKDF)", { group: "open" }, async () => {
  await openPrivateKey(underRandomKey, TEST_NODE_SECRET);
});
