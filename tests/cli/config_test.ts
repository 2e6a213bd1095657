import assert from "node:assert/strict";
import { join } from "node:path";
import {
  loadBootstrapFile,
  parseBootstrapEntry,
  secondsSetting,
  serveConfig,
  UsageError,
} from "../../lib/cli/config.ts";
import { fixtureKey } from "../helpers/keys.ts";

const KEY = (await fixtureKey("user1")).publicKey;
const WEAK = (await fixtureKey("rsa2048")).publicKey;

Deno.test("parseBootstrapEntry() reads host:port#PUBKEY, IPv6 in brackets", () => {
  assert.deepEqual(parseBootstrapEntry(`chat.example:8765#${KEY}`), {
    host: "chat.example",
    port: 8765,
    pubkey: KEY,
  });
  assert.deepEqual(parseBootstrapEntry(`[::1]:9#${KEY}`), { host: "::1", port: 9, pubkey: KEY });
});

Deno.test("parseBootstrapEntry() refuses malformed entries and bad keys with a clear message", () => {
  assert.throws(() => parseBootstrapEntry("no-port#x"), /must look like host:port#PUBKEY/);
  assert.throws(() => parseBootstrapEntry(`h:70000#${KEY}`), /port of bootstrap entry h:70000/);
  assert.throws(() => parseBootstrapEntry(`h:1#${WEAK}`), /2048-bit/);
  assert.throws(() => parseBootstrapEntry(`h:1#${WEAK}`), UsageError);
});

Deno.test("loadBootstrapFile() reads the standard's YAML shape", () => {
  const dir = Deno.makeTempDirSync();
  const f = join(dir, "b.yaml");
  Deno.writeTextFileSync(
    f,
    `bootstrap_servers:\n  - host: "192.0.2.1"   # introducer 1\n    port: 12345\n    pubkey: "${KEY}"\n  - host: b.example\n    port: 5432\n    pubkey: ${KEY}\n`,
  );
  assert.deepEqual(loadBootstrapFile(f), [
    { host: "192.0.2.1", port: 12345, pubkey: KEY },
    { host: "b.example", port: 5432, pubkey: KEY },
  ]);
  Deno.writeTextFileSync(f, "servers: []\n");
  assert.throws(() => loadBootstrapFile(f), /expected a list under bootstrap_servers/);
  Deno.writeTextFileSync(f, "bootstrap_servers:\n  - port: 1\n");
  assert.throws(() => loadBootstrapFile(f), /entry 1 has no host/);
  Deno.writeTextFileSync(f, "bootstrap_servers: [unclosed\n");
  assert.throws(() => loadBootstrapFile(f), /cannot read bootstrap file/);
});

Deno.test("serveConfig(): --bootstrap entries, timers in seconds with fractions, and their validation", () => {
  const c = serveConfig({
    bootstrap: [`a:1#${KEY}`, `b:2#${KEY}`],
    "heartbeat-interval": "0.5",
    "link-timeout": "1.5",
    introducer: true,
  });
  assert.deepEqual(c.federation.bootstrap.map((b) => b.host), ["a", "b"]);
  assert.equal(c.federation.heartbeatMs, 500);
  assert.equal(c.federation.linkTimeoutMs, 1500);
  assert.equal(c.federation.introducer, true);
  assert.throws(
    () => serveConfig({ "heartbeat-interval": "10", "link-timeout": "5" }),
    /must be longer than/,
  );
  assert.throws(() => secondsSetting("abc", "--link-timeout", 0.1, 10), /expected seconds/);
  const d = serveConfig({});
  assert.equal(d.federation.heartbeatMs, 15_000);
  assert.equal(d.federation.linkTimeoutMs, 45_000);
});

Deno.test("parseBootstrapEntry() reads ws:// and wss:// URLs with a path (PROFILE §15)", () => {
  assert.deepEqual(parseBootstrapEntry(`ws://chat.example:8765/chat#${KEY}`), {
    host: "chat.example",
    port: 8765,
    pubkey: KEY,
    path: "/chat",
  });
  assert.deepEqual(parseBootstrapEntry(`wss://chat.example/socp/ws#${KEY}`), {
    host: "chat.example",
    port: 443,
    pubkey: KEY,
    path: "/socp/ws",
    tls: true,
  });
  assert.deepEqual(parseBootstrapEntry(`ws://[::1]:9/#${KEY}`), { host: "::1", port: 9, pubkey: KEY });
  assert.deepEqual(parseBootstrapEntry(`ws://h:80#${KEY}`), { host: "h", port: 80, pubkey: KEY });
  assert.throws(() => parseBootstrapEntry(`ws://user:pw@h:1/x#${KEY}`), /host, a port and a path only/);
  assert.throws(() => parseBootstrapEntry(`ws://h:1/x#${WEAK}`), /2048-bit/);
  assert.throws(
    () => parseBootstrapEntry(`http://h:1/x#${KEY}`),
    /must look like host:port#PUBKEY or ws:\/\//,
  );
});
