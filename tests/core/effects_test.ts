/** lib/core/effects.ts (with config.ts): the dial endpoint and the defaults the reducer's timers run on. */
import assert from "node:assert/strict";
import { DEFAULT_FEDERATION, DEFAULT_LIMITS, endpointUrl } from "../../lib/core/types.ts";

Deno.test("a dial's URL: scheme, host (IPv6 in brackets), port and path", () => {
  assert.equal(endpointUrl({ host: "127.0.0.1", port: 8765, scheme: "ws", path: "" }), "ws://127.0.0.1:8765");
  assert.equal(endpointUrl({ host: "::1", port: 443, scheme: "wss", path: "/socp" }), "wss://[::1]:443/socp");
});

Deno.test("the defaults keep the timers consistent: a link times out after several heartbeats, freshness covers the seen TTL", () => {
  assert.ok(DEFAULT_FEDERATION.linkTimeoutMs >= 2 * DEFAULT_FEDERATION.heartbeatMs);
  assert.ok(
    DEFAULT_LIMITS.seenTtlMs >= DEFAULT_LIMITS.freshnessMs,
    "a replay within freshness is still seen",
  );
  assert.ok(DEFAULT_LIMITS.firstFrameMs < DEFAULT_FEDERATION.linkTimeoutMs);
});
