import assert from "node:assert/strict";
import {
  isServerId,
  isUuid,
  parseFrame,
  serializeEnvelope,
  withFrameId,
} from "../../lib/protocol/envelope.ts";

const U1 = "a11ce000-0000-4000-8000-000000000001";
const U2 = "b0b00000-0000-4000-8000-000000000002";
const dm = { ciphertext: "abc", sender_pub: "key", content_sig: "sig" };

function frame(o: Record<string, unknown>): string {
  return JSON.stringify({
    type: "MSG_DIRECT",
    from: U1,
    to: U2,
    ts: 1700000000000,
    payload: dm,
    sig: "",
    ...o,
  });
}

Deno.test("parseFrame() accepts a valid MSG_DIRECT and keeps its fields", () => {
  const r = parseFrame(frame({}));
  assert.ok(r.ok);
  assert.equal(r.envelope.type, "MSG_DIRECT");
  assert.equal(r.envelope.ts, 1700000000000);
  assert.deepEqual(r.envelope.payload, dm);
});

Deno.test("parseFrame() tolerates one trailing newline", () => {
  assert.ok(parseFrame(frame({}) + "\n").ok);
  assert.ok(parseFrame(frame({}) + "\r\n").ok);
});

Deno.test("parseFrame() reports malformed JSON as UNKNOWN_TYPE with a detail", () => {
  const r = parseFrame("{not json");
  assert.ok(!r.ok);
  assert.equal(r.error.code, "UNKNOWN_TYPE");
  assert.match(r.error.detail, /malformed JSON/);
});

Deno.test("parseFrame() rejects a frame that is not an object", () => {
  for (const t of ["[]", "1", '"x"', "null"]) {
    const r = parseFrame(t);
    assert.ok(!r.ok);
    assert.match(r.error.detail, /JSON object/);
  }
});

Deno.test("parseFrame() rejects unknown and wrong-case types (types are case-sensitive)", () => {
  for (const type of ["NOPE", "msg_direct", 7]) {
    const r = parseFrame(frame({ type }));
    assert.ok(!r.ok);
    assert.equal(r.error.code, "UNKNOWN_TYPE");
  }
});

Deno.test("parseFrame() maps MSG_PRIVATE to MSG_DIRECT", () => {
  const r = parseFrame(frame({ type: "MSG_PRIVATE" }));
  assert.ok(r.ok);
  assert.equal(r.envelope.type, "MSG_DIRECT");
});

Deno.test("parseFrame() checks envelope fields: from, to, ts as an integer, sig as a string", () => {
  const bad: Record<string, unknown>[] = [
    { from: 5 },
    { from: "" },
    { to: null },
    { ts: "1700000000000" },
    { ts: 1.5 },
    { ts: -1 },
    { ts: 2 ** 60 },
    { sig: 12 },
  ];
  for (const o of bad) assert.equal(parseFrame(frame(o)).ok, false, JSON.stringify(o));
});

Deno.test("parseFrame() validates payloads and names the failing field", () => {
  const r = parseFrame(frame({ payload: { ciphertext: "abc", sender_pub: "k" } }));
  assert.ok(!r.ok);
  assert.match(r.error.detail, /payload\.content_sig is missing/);
  const f = parseFrame(JSON.stringify({
    type: "FILE_START",
    from: U1,
    to: U2,
    ts: 1,
    payload: { file_id: "f", name: "a", size: 1, sha256: "0".repeat(64), mode: "group" },
  }));
  assert.ok(!f.ok);
  assert.match(f.error.detail, /payload\.mode must be one of/);
});

Deno.test("parseFrame() accepts a bare CTRL_CLOSE as the standard shows it", () => {
  const r = parseFrame('{"type":"CTRL_CLOSE"}');
  assert.ok(r.ok);
  assert.equal(r.envelope.type, "CTRL_CLOSE");
});

Deno.test("parseFrame() keeps extra payload fields (forward compatibility)", () => {
  const r = parseFrame(frame({ payload: { ...dm, extra: 1 } }));
  assert.ok(r.ok);
  assert.equal((r.envelope.payload as Record<string, unknown>).extra, 1);
});

Deno.test("serializeEnvelope() round-trips through parseFrame()", () => {
  const r = parseFrame(frame({ sig: "xyz" }));
  assert.ok(r.ok);
  const again = parseFrame(serializeEnvelope(r.envelope));
  assert.ok(again.ok);
  assert.deepEqual(again.envelope, r.envelope);
});

Deno.test("isUuid() and isServerId() follow PROFILE §5", () => {
  assert.ok(isUuid(U1));
  assert.ok(!isUuid("alice"));
  assert.ok(isServerId("server_3f0e5f0a"));
  assert.ok(!isServerId("has space"));
  assert.ok(!isServerId("x".repeat(129)));
});

Deno.test("withFrameId() adds a top-level id outside the signed payload; parseFrame() ignores it", () => {
  const text = serializeEnvelope({ type: "HEARTBEAT", from: "s", to: "*", ts: 1, payload: {}, sig: "x" });
  const a = withFrameId(text, "id-1");
  const o = JSON.parse(a);
  assert.equal(o.id, "id-1");
  assert.deepEqual({ ...o, id: undefined }, { ...JSON.parse(text), id: undefined });
  assert.equal(withFrameId("{}", "i"), '{"id":"i"}');
  const r = parseFrame(a);
  assert.ok(r.ok && !("id" in r.envelope) && r.envelope.sig === "x");
  assert.equal(
    JSON.parse(serializeEnvelope({ type: "HEARTBEAT", from: "s", to: "*", ts: 1, payload: {} }, "z")).id,
    "z",
  );
});

Deno.test("variants (PROFILE §15): pubkey_b64u in USER_HELLO; {user,…} adverts only with clientForms", () => {
  const hello = parseFrame(JSON.stringify({
    type: "USER_HELLO",
    from: "u",
    to: "*",
    ts: 1,
    payload: { client: "py", pubkey_b64u: "KEY" },
  }));
  assert.ok(hello.ok && hello.envelope.type === "USER_HELLO");
  assert.equal(hello.envelope.payload.pubkey, "KEY");
  assert.deepEqual(
    hello.signed,
    { client: "py", pubkey_b64u: "KEY" },
    "signatures cover the payload as sent",
  );
  const advert = JSON.stringify({
    type: "USER_ADVERTISE",
    from: "srv",
    to: "*",
    ts: 1,
    payload: { user: "u1", name: "Zed", pubkey_b64u: "K", via: "other" },
  });
  assert.equal(parseFrame(advert).ok, false, "a server does not read (or relay re-shaped) client-only forms");
  const a = parseFrame(advert, { clientForms: true });
  assert.ok(a.ok && a.envelope.type === "USER_ADVERTISE");
  assert.deepEqual(a.envelope.payload, {
    user_id: "u1",
    server_id: "other",
    meta: { display_name: "Zed" },
    pubkey: "K",
  });
  const rm = parseFrame(
    JSON.stringify({ type: "USER_REMOVE", from: "srv", to: "*", ts: 1, payload: { user: "u1" } }),
    {
      clientForms: true,
    },
  );
  assert.ok(rm.ok && rm.envelope.type === "USER_REMOVE");
  assert.deepEqual(rm.envelope.payload, { user_id: "u1", server_id: "srv" });
});
