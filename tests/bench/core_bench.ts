/**
 * Where a DM's time goes: parsing, canonical JSON, the reducer step, and the RSA operations around them.
 * Run with `deno task bench`.
 */
import { initState, reduce } from "../../lib/core/reduce.ts";
import { DEFAULT_FEDERATION, DEFAULT_LIMITS } from "../../lib/core/types.ts";
import { encryptTo, sha256Hex, verifySignature } from "../../lib/crypto/rsa.ts";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { parseFrame } from "../../lib/protocol/envelope.ts";
import { fixtureKey } from "../helpers/keys.ts";

const k1 = await fixtureKey("user1");
const k2 = await fixtureKey("user2");
const A = "a11ce000-0000-4000-8000-000000000001";
const B = "b0b00000-0000-4000-8000-000000000002";
const ciphertext = await encryptTo(k2.publicKey, new TextEncoder().encode("hello ".repeat(50)));
const payload = { ciphertext, sender_pub: k1.publicKey, content_sig: await k1.sign(new Uint8Array(8)) };
const now = Date.now();
const dmText = JSON.stringify({ type: "MSG_DIRECT", from: A, to: B, ts: now, payload, sig: "" });
const data = new TextEncoder().encode(canonicalJson(payload));
const sig = await k1.sign(data);

Deno.bench("parseFrame(MSG_DIRECT, 1 block)", { group: "frame" }, () => {
  parseFrame(dmText);
});
Deno.bench("canonicalJson + sha256 of a DM payload (WebCrypto)", { group: "frame" }, async () => {
  await sha256Hex(canonicalJson(payload));
});

// The reducer: a DM from A to B on a node with both online; a fresh ts each time so the seen cache admits it.
const state = initState({
  serverId: "S",
  serverPub: "P",
  serverPubPem: "P",
  federation: DEFAULT_FEDERATION,
  limits: { ...DEFAULT_LIMITS, ratePerSec: 1e9, rateBurst: 1e9 },
  labWeakKeys: false,
  labReplay: false,
});
let t = now;
reduce(state, { kind: "connected", conn: 1, addr: "a", now: t });
reduce(state, { kind: "connected", conn: 2, addr: "b", now: t });
for (const [conn, user, key] of [[1, A, k1.publicKey], [2, B, k2.publicKey]] as const) {
  const parsed = parseFrame(
    JSON.stringify({ type: "USER_HELLO", from: user, to: "", ts: t, payload: { client: "b", pubkey: key } }),
  );
  reduce(state, { kind: "frame", conn, now: t, parsed, digest: "h" + conn, sig: "absent" });
}
let i = 0;
Deno.bench("reduce(MSG_DIRECT -> USER_DELIVER)", { group: "frame" }, () => {
  t++;
  const parsed = parseFrame(dmText);
  if (parsed.ok) parsed.envelope.ts = t;
  reduce(state, { kind: "frame", conn: 1, now: t, parsed, digest: String(i++), sig: "absent" });
});

Deno.bench("RSA-4096 PSS sign (salt 478)", { group: "rsa" }, async () => {
  await k1.sign(data);
});
Deno.bench("RSA-4096 PSS verify", { group: "rsa" }, async () => {
  await verifySignature(k1.publicKey, data, sig);
});
Deno.bench("RSA-4096 OAEP encrypt, 446 bytes", { group: "rsa" }, async () => {
  await encryptTo(k2.publicKey, new Uint8Array(446));
});
Deno.bench("RSA-4096 OAEP decrypt, one block", { group: "rsa" }, async () => {
  await k2.decrypt(ciphertext);
});
