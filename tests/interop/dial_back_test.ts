/**
 * PROFILE §15 "Dial-back links" (issue 17): an introducer that welcomes our JOIN, closes the join socket (1000),
 * then dials our node's advertised address and opens with `SERVER_PRESENCE_SYNC {server_id, users}` and no hello.
 * Our node takes that connection as the link (its `from` is the server the welcome pinned, its `sig` verifies with
 * the pinned key), reads `users` as adverts, and, once that link drops, redials with SERVER_ANNOUNCE (such servers
 * ignore SERVER_HELLO_LINK). Negative (PROFILE §16): a PRESENCE_SYNC from an id no welcome pinned, or with a
 * signature the pinned key does not verify, is refused with one clear ERROR and no link.
 */
import assert from "node:assert/strict";
import { fixtureKey } from "../helpers/keys.ts";
import { ScriptedConn, ScriptedServer, signPayload } from "../helpers/scripted_server.ts";
import { until } from "../helpers/until.ts";
import { type Frame, sleep } from "../helpers/ws_peer.ts";
import {
  connectOurs,
  deliverFrom,
  health,
  joiningNode,
  linked,
  opts,
  ours,
  readDeliver,
  serverKey as introKey,
  watch,
  zed,
} from "./common.ts";

const otherKey = await fixtureKey("user4");
const INTRO = "db-1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9";

function presenceSync(to: string, from = INTRO): Frame {
  return {
    type: "SERVER_PRESENCE_SYNC",
    from,
    to,
    payload: {
      server_id: from,
      users: [{ user_id: zed.id, server_id: from, meta: { display_name: "zed" }, pubkey: zed.key.publicKey }],
    },
  };
}

/**
 * The dial-back introducer: welcomes a JOIN, closes the join socket, and (when `dialBack`) dials the joiner back
 * with `dialBack(server, joinFrame)`. Inbound frames after the first JOIN (our redials) are kept in `conns`.
 */
function introducer(
  dialBack?: (server: ScriptedServer, join: Frame) => Promise<void>,
  servers: Frame[] = [],
) {
  let joined = false;
  return ScriptedServer.start({
    key: introKey,
    onFrame: async (f, conn, server) => {
      if (f.type !== "SERVER_HELLO_JOIN" || joined) return;
      joined = true;
      await conn.send({
        type: "SERVER_WELCOME",
        from: INTRO,
        to: f.from,
        payload: { assigned_id: f.from, server_id: INTRO, server_pub: introKey.publicKey, servers },
      });
      await sleep(100); // the deployed introducer's own pause between its welcome and its close
      conn.close(1000, "welcome sent; I will call you");
      await dialBack?.(server, f);
    },
  });
}

Deno.test(
  { name: "a dial-back introducer: PRESENCE_SYNC becomes the link, redial with ANNOUNCE", ...opts },
  async () => {
    let back: ScriptedConn | undefined;
    await using intro = introducer(async (server, join) => {
      back = await server.dial(`ws://${join.payload.host}:${join.payload.port}`);
      await back.send(presenceSync(join.from));
    });
    await using node = await joiningNode(intro.port, introKey);
    const link = await until(() => back, "the introducer's dial-back");
    await linked(node, 1);
    await using client = await connectOurs(node.url);
    const got = watch(client);
    await until(() => client.directory.has(zed.id), "zed (from PRESENCE_SYNC users) in our directory");
    assert.equal(client.directory.get(zed.id)?.serverId, INTRO);
    await link.waitFor((f) => f.type === "USER_ADVERTISE" && f.payload.user_id === ours.id, "our advert");
    await client.tell(zed.id, "over the dial-back link");
    const sd = await link.waitFor((f) => f.type === "SERVER_DELIVER", "our DM on the dial-back link");
    assert.equal(await readDeliver(zed.key, sd), "over the dial-back link");
    await link.send(await deliverFrom(zed, { id: ours.id, pubkey: ours.key.publicKey }, "and back", INTRO));
    const dm = await until(() => got.find((e) => e.kind === "dm"), "zed's DM");
    assert.ok(dm.kind === "dm" && dm.text === "and back" && dm.verified);
    const errors = link.received.filter((f) => f.type === "ERROR");
    assert.deepEqual(errors, [], "no ERROR on the dial-back link");

    // The link drops: our node redials the introducer with SERVER_ANNOUNCE, never a LINK it would ignore.
    const before = intro.conns.length;
    link.close(1000, "going away"); // a client socket: 1000 (a 1001 would throw, PROFILE §15)
    const redial = await until(
      () => intro.conns.slice(before).find((c) => c.received.length > 0),
      "our node's redial and its first frame",
      15_000,
    );
    const first = redial.received[0];
    assert.equal(first.type, "SERVER_ANNOUNCE");
    assert.equal(first.from, node.serverId);
    assert.deepEqual(Object.keys(first.payload).sort(), ["host", "port", "pubkey"]);
    assert.ok(intro.conns.slice(1).every((c) => c.received[0]?.type !== "SERVER_HELLO_LINK"));
  },
);

Deno.test({
  name: "a PRESENCE_SYNC from an unpinned id or with a bad signature: one ERROR, no link",
  ...opts,
}, async () => {
  let joinFrame: Frame | undefined;
  // The welcome lists another server, S2: our node pins it (trust on introduction), but no welcome pinned it.
  const S2 = "s2-0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e";
  await using intro = introducer((_, join) => {
    joinFrame = join;
    return Promise.resolve();
  }, [{ server_id: S2, host: "127.0.0.1", port: 9, pubkey: otherKey.publicKey }]);
  await using node = await joiningNode(intro.port, introKey);
  await until(() => joinFrame, "the JOIN");
  await until(async () => (await health(node)).servers_linked === 0, "the join socket closed");
  const url = `ws://127.0.0.1:${joinFrame!.payload.port}`;

  // A stranger: an id no welcome pinned, signed with its own key.
  await using stranger = await ScriptedConn.dial(url, otherKey);
  await stranger.send(presenceSync(node.serverId, "stranger-1"));
  // The introducer's id, but signed with another key.
  await using forged = await ScriptedConn.dial(url, otherKey);
  await forged.send(presenceSync(node.serverId));
  // The introducer's id and key, but a payload the signature does not cover.
  await using edited = await ScriptedConn.dial(url, introKey);
  const f = presenceSync(node.serverId);
  const sig = await signPayload(introKey, f.payload);
  edited.sendRaw({ ...f, ts: Date.now(), payload: { ...f.payload, users: [] }, sig });

  // S2, pinned from the welcome's list and signing with its pinned key: a server, but not our introducer.
  await using s2 = await ScriptedConn.dial(url, otherKey);
  await s2.send(presenceSync(node.serverId, S2));

  const cases = [["stranger", stranger], ["forged", forged], ["edited", edited], [
    "pinned, not ours",
    s2,
  ]] as const;
  for (const [label, c] of cases) {
    const err = await c.waitFor((x) => x.type === "ERROR", `the refusal (${label})`);
    console.log(`[interop] dial-back refused (${label}): ${err.payload.code} ${err.payload.detail}`);
    let closed = false;
    c.closed.then(() => closed = true);
    await until(() => closed, `the refused connection closed (${label})`);
    assert.equal(c.received.filter((x) => x.type === "ERROR").length, 1, `one ERROR (${label})`);
  }
  assert.equal((await health(node)).servers_linked, 0, "no link");
});
