/** Fixture keys for tests (generated once with openssl; see tests/fixtures/keys/). */
import { PrivateKey } from "../../lib/crypto/rsa.ts";

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
