/**
 * Our real node joins scripted introducers that answer SERVER_HELLO_JOIN with each deployed SERVER_WELCOME form
 * (issue 8 item 5, PROFILE §15), quoted frame for frame, through a bootstrap URL with a path (`ws://…/chat#KEY`,
 * item 12). The introducers keep links alive with WebSocket pings only (no HEARTBEAT frames, item 8). For each
 * form: the link comes up and stays up, presence shows on both sides, a DM crosses once each way, nothing is
 * refused, and the idle link carries a flat trickle of heartbeats (printed per minute). An unsigned welcome is
 * still refused, with one clear ERROR.
 */
import assert from "node:assert/strict";
import { type ScriptedConn, ScriptedServer, userAdvert } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import {
  concurrent,
  connectOurs,
  deliverFrom,
  health,
  joiningNode,
  linked,
  noRefusals,
  opts,
  ours,
  quietLink,
  readDeliver,
  serverKey as introKey,
  watch,
  zed,
} from "./common.ts";

const INTRO = "pyserver-6f1c2a9e-2b1e-4c7a-9d55-5b9f0c1d2e3f"; // a prefixed id, as one deployed server uses

type Variant = (port: number) => Record<string, unknown>;

const VARIANTS: [string, Variant][] = [
  [
    'SERVER_WELCOME {"server_id","server_pub","snapshot":{"user_locations":{}},"assigned_id":null}',
    () => ({
      server_id: INTRO,
      server_pub: introKey.publicKey,
      snapshot: { user_locations: {} },
      assigned_id: null,
    }),
  ],
  [
    'SERVER_WELCOME {"host","port","pubkey","role"} without assigned_id',
    (port) => ({ host: "127.0.0.1", port, pubkey: introKey.publicKey, role: "introducer" }),
  ],
];

/** A scripted introducer: welcomes a JOIN with `variant`, then advertises its user Zed. Never sends HEARTBEAT. */
function introducer(variant: Variant, signWelcome = true) {
  return ScriptedServer.start({
    key: introKey,
    wsPath: "/chat",
    pingSeconds: 1,
    onFrame: async (f, conn, server) => {
      if (f.type !== "SERVER_HELLO_JOIN") return;
      const welcome = { type: "SERVER_WELCOME", from: INTRO, to: f.from, payload: variant(server.port) };
      if (!signWelcome) return conn.sendRaw({ ...welcome, ts: Date.now(), sig: "" });
      await conn.send(welcome);
      await conn.send(userAdvert(zed, "zed", INTRO));
    },
  });
}

/** Our node joins an introducer answering with `variant`: presence, a DM each way, and a quiet link that holds. */
async function joinsWith(name: string, variant: Variant): Promise<void> {
  await using intro = introducer(variant);
  await using node = await joiningNode(intro.port, introKey, "/chat");
  await linked(node, 1);
  const link: ScriptedConn = intro.conns[0];
  const join = link.received[0];
  assert.equal(join.type, "SERVER_HELLO_JOIN");
  assert.equal(node.serverId, join.from);

  // Presence on both sides.
  await using client = await connectOurs(node.url);
  const got = watch(client);
  await link.waitFor((f) => f.type === "USER_ADVERTISE" && f.payload.user_id === ours.id, "our advert");
  await until(() => client.directory.has(zed.id), "zed in our directory");
  assert.equal(client.directory.get(zed.id)?.serverId, INTRO);

  // A DM each way, delivered once.
  await client.tell(zed.id, "hello zed");
  const sd = await link.waitFor((f) => f.type === "SERVER_DELIVER", "our SERVER_DELIVER");
  assert.equal(await readDeliver(zed.key, sd), "hello zed");
  assert.equal(sd.payload.orig_ts, sd.ts, "orig_ts = the original ts (item 7)");
  assert.equal(sd.payload.ack, undefined, "no ACK extension for a server that does not say it speaks it");
  await link.send(
    await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "hello ours", INTRO),
  );
  const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM");
  assert.ok(dm.kind === "dm" && dm.text === "hello ours" && dm.verified);

  // The link stays up (several link timeouts with no frame from the introducer), heartbeats only.
  const m = await quietLink(name, link, 6, 500);
  assert.ok(m.perMinute > 0);
  assert.equal((await health(node)).servers_linked, 1);
  assert.equal(intro.conns.length, 1, "no redial: the first link stayed up");
  assert.equal(got.filter((e) => e.kind === "dm").length, 1, "delivered once");
  assert.equal(link.received.filter((f) => f.type === "SERVER_DELIVER").length, 1, "sent once");
  noRefusals(node, intro.conns, name);
}

Deno.test({
  name: "our node joins an introducer that answers with each deployed welcome form",
  ...concurrent,
}, async (t) => {
  // One node and introducer per form, at the same time: each waits twelve of its node's heartbeats.
  await Promise.all(
    VARIANTS.map(([name, variant]) => t.step({ name, ...concurrent, fn: () => joinsWith(name, variant) })),
  );
});

Deno.test({ name: "an unsigned SERVER_WELCOME is still refused: one ERROR, no link", ...opts }, async () => {
  await using intro = introducer(VARIANTS[0][1], false);
  await using node = await joiningNode(intro.port, introKey, "/chat");
  const link = await until(() => intro.conns[0], "the join connection");
  const err = await link.waitFor((f) => f.type === "ERROR", "the refusal");
  assert.equal(err.payload.code, "INVALID_SIG");
  assert.match(err.payload.detail, /SERVER_WELCOME/);
  // PROFILE §16: a failed join, closed and retried later with backoff; one ERROR per JOIN, never a storm. The
  // node logs each failed round with the wait before the next (network.no_introducer retry_ms): two rounds.
  const rounds = () =>
    node.logs.flatMap((l) => {
      const m = /network\.no_introducer .*retry_ms=(\d+)/.exec(l);
      return m ? [Number(m[1])] : [];
    });
  await until(() => rounds().length >= 2 && intro.conns.length >= 2, "two failed join rounds");
  const [wait1, wait2] = rounds();
  assert.ok(wait2 > wait1, `the wait grows: ${wait1} ms, then ${wait2} ms`);
  assert.equal((await health(node)).servers_linked, 0);
  for (const c of intro.conns.slice(0, 2)) {
    await c.waitFor((f) => f.type === "ERROR", "the refusal");
    assert.equal(
      c.received.filter((f) => f.type === "SERVER_HELLO_JOIN").length,
      1,
      "one JOIN per connection",
    );
    assert.equal(c.received.filter((f) => f.type === "ERROR").length, 1, "one ERROR per refused welcome");
  }
  assert.ok(node.logs.some((l) => l.includes("join.wrong_key")), "a WARN names both fingerprints");
});
