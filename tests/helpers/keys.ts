/** Fixture keys for tests (generated once with openssl; see tests/fixtures/keys/). */
import { sealPrivateKey } from "../../lib/crypto/keyfile.ts";
import { PrivateKey } from "../../lib/crypto/rsa.ts";
import { Store } from "../../lib/store/sqlite.ts";

const dir = new URL("../fixtures/keys/", import.meta.url);

/** The PEM text of a fixture file. */
export function fixtureText(name: string): string {
  return Deno.readTextFileSync(new URL(name, dir));
}

const cache = new Map<string, Promise<PrivateKey>>();

/**
 * A fixture private key: user1..user6 (users), node1..node8 (node identities) and channel1..channel4 (public-channel
 * keys) are RSA-4096; rsa2048, rsa1024, rsa4096_e3 are bad keys.
 */
export function fixtureKey(name: string): Promise<PrivateKey> {
  let p = cache.get(name);
  if (!p) {
    p = PrivateKey.fromPem(fixtureText(`${name}.pem`));
    cache.set(name, p);
  }
  return p;
}

/**
 * A node's random key for sealing its own keys in tests (what `node.secret` holds after its prefix: base64url of
 * ≥ 32 bytes), so sealing and opening take HKDF, as on a real node without a passphrase.
 */
export const TEST_NODE_SECRET = { randomKey: "dGVzdC1ub2RlLXNlY3JldC0zMi1ieXRlcy1mb3Itc29jcA" } as const;

/**
 * The parts of an in-process node (`createNode`) that make it hold a fixture public-channel key from its first
 * step: a store in memory with `channel1` sealed under {@linkcode TEST_NODE_SECRET}, and that secret. Without them
 * a first node creates its channel key (RSA-4096 generation: seconds of CPU).
 */
export async function fixtureChannelParts(
  channel = "channel1",
): Promise<{ store: Store; secret: typeof TEST_NODE_SECRET }> {
  const key = await fixtureKey(channel);
  const store = Store.open(":memory:");
  store.setChannelKey(key.publicKey, await sealPrivateKey(await key.exportPkcs8(), TEST_NODE_SECRET));
  store.setChannel(1, key.publicKey, Date.now());
  return { store, secret: TEST_NODE_SECRET };
}
