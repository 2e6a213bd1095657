/** The web routes without a browser: security headers, Host-relative URLs, TLS detection, 404s. */
import assert from "node:assert/strict";
import { CSP, networkJson, type NetworkSnapshot, webRoute } from "../../lib/web/routes.ts";

const snap: NetworkSnapshot = {
  serverId: "11111111-2222-4333-8444-555555555555",
  pubkey: "MIIBIjANBgkq",
  fingerprint: "abcd:ef01",
  version: "0.1.0",
  labModes: [],
  maxFileBytes: 1024,
  linked: [{ serverId: "s2", host: "10.0.0.2", port: 8765 }],
  users: [{ userId: "u1", serverId: "s2", name: "bob" }],
};

Deno.test("webRoute() serves the app with a self-only CSP, nosniff and no framing", async () => {
  const res = webRoute(new Request("http://chat.example:8765/"), () => snap)!;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-security-policy"), CSP);
  assert.match(CSP, /default-src 'none'/);
  assert.match(CSP, /script-src 'self'(;|$)/);
  assert.match(CSP, /connect-src 'self'(;|$)/);
  assert.ok(!/unsafe-inline|unsafe-eval|https?:/.test(CSP), CSP);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  const html = await res.text();
  assert.ok(html.includes(snap.serverId));
  assert.ok(html.includes("deno task chat --server ws://chat.example:8765"));
  assert.ok(!/<script>|\son\w+=/.test(html), "no inline script or handler");
  for (const path of ["/app.js", "/app.css", "/decrypt-worker.js"]) {
    const r = webRoute(new Request(`http://chat.example:8765${path}`), () => snap)!;
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get("x-content-type-options"), "nosniff");
    assert.ok((await r.text()).length > 100, path);
  }
  assert.equal(webRoute(new Request("http://chat.example:8765/nope"), () => snap), null);
});

Deno.test("networkJson() builds the bootstrap entry and ws URL from the request's Host, wss:// over TLS", () => {
  const plain = networkJson(new Request("http://chat.example:8765/api/network"), snap);
  assert.equal(plain.bootstrap, `chat.example:8765#${snap.pubkey}`);
  assert.equal(plain.ws_url, "ws://chat.example:8765");
  // The terminal command that exists after the README's quick start.
  assert.equal(plain.chat_command, "deno task chat --server ws://chat.example:8765 --name yourname");
  const tls = networkJson(new Request("https://chat.example/api/network"), snap);
  assert.equal(tls.bootstrap, `wss://chat.example:443#${snap.pubkey}`);
  assert.equal(tls.ws_url, "wss://chat.example");
  const proxied = networkJson(
    new Request("http://chat.example/api/network", { headers: { "x-forwarded-proto": "https" } }),
    snap,
  );
  assert.equal(proxied.ws_url, "wss://chat.example");
  const v6 = networkJson(new Request("http://[2001:db8::1]:9000/api/network"), snap);
  assert.equal(v6.bootstrap, `[2001:db8::1]:9000#${snap.pubkey}`);
  assert.deepEqual(plain.linked_servers, [{ server_id: "s2", host: "10.0.0.2", port: 8765 }]);
  assert.deepEqual(plain.users_online, [{ user_id: "u1", server_id: "s2", name: "bob" }]);
  assert.equal(plain.max_file_bytes, 1024);
});

Deno.test("webRoute() escapes what it puts in the page", async () => {
  const res = webRoute(
    new Request("http://x.example/"),
    () => ({ ...snap, serverId: '<img src=x onerror="1">' }),
  )!;
  const html = await res.text();
  assert.ok(!html.includes("<img src=x"), "escaped");
  assert.ok(html.includes("&#60;img src=x onerror=&#34;1&#34;&#62;"));
});
