/** lib/core/channel.ts: the public channel's members and version (PROFILE §8, §15, §16). */
import assert from "node:assert/strict";
import {
  channelJoin,
  channelReady,
  MAX_VERSION_STEP,
  onChannelAdd,
  onChannelUpdated,
  onKeyShareFromServer,
} from "../../lib/core/channel.ts";
import { Out } from "../../lib/core/out.ts";
import { initState } from "../../lib/core/reduce.ts";
import type { Conn, Effect, State, UserRecord } from "../../lib/core/types.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";
import { ALICE, BOB, config, T0 } from "../helpers/reducer.ts";

const S2 = "9c2d7e41-1a3b-4c5d-8e6f-7a8b9c0d1e2f";
const link = { id: 10, role: "server", serverId: S2 } as Conn;
const alice: UserRecord = { userId: ALICE, pubkey: "K-A", encPubkey: "E-A", meta: null, version: 1 };

function withChannel(version = 5): State {
  const s = initState(config());
  s.channel = { version, creatorPub: "CH", members: new Set() };
  s.links.set(S2, 10);
  return s;
}

function frame<T extends "PUBLIC_CHANNEL_ADD" | "PUBLIC_CHANNEL_UPDATED" | "PUBLIC_CHANNEL_KEY_SHARE">(
  type: T,
  payload: unknown,
): Envelope<T> {
  return { type, from: S2, to: "*", ts: T0, payload, sig: "S" } as unknown as Envelope<T>;
}

const ops = (fx: Effect[]) => fx.flatMap((e) => e.kind === "persist" ? [e.op.op] : []);

Deno.test("a user joining here: member, version + 1, ADD and UPDATED to every link, the key share to them", () => {
  const s = withChannel();
  const out = new Out(s, T0);
  channelJoin(out, 1, alice);
  assert.equal(s.channel!.version, 6);
  assert.ok(s.channel!.members.has(ALICE));
  assert.deepEqual(ops(out.effects), ["channel", "member"]);
  const sends = out.effects.flatMap((e) => e.kind === "send" ? [[e.conn, e.frame.type, e.seal?.kind]] : []);
  assert.deepEqual(sends, [
    [10, "PUBLIC_CHANNEL_ADD", undefined],
    [10, "PUBLIC_CHANNEL_UPDATED", "updated"],
    [1, "PUBLIC_CHANNEL_KEY_SHARE", "keyShare"],
  ]);
  const again = new Out(s, T0);
  channelJoin(again, 2, alice);
  assert.equal(s.channel!.version, 6, "a member already: only the key share");
  assert.deepEqual(again.effects.map((e) => e.kind), ["send"]);
});

Deno.test("versions converge to the maximum, but never by more than MAX_VERSION_STEP at once (PROFILE §16)", () => {
  const s = withChannel(5);
  onChannelAdd(new Out(s, T0), link, frame("PUBLIC_CHANNEL_ADD", { add: [BOB], if_version: 9 }));
  assert.equal(s.channel!.version, 10, "if_version + 1");
  assert.ok(s.channel!.members.has(BOB));
  const lie = new Out(s, T0);
  onChannelUpdated(
    lie,
    link,
    frame("PUBLIC_CHANNEL_UPDATED", { version: 10 + MAX_VERSION_STEP + 1, wraps: [] }),
  );
  assert.equal(s.channel!.version, 10, "refused");
  assert.ok(lie.effects.some((e) => e.kind === "log" && e.event === "channel.version_refused"));
  onChannelUpdated(new Out(s, T0), link, frame("PUBLIC_CHANNEL_UPDATED", { version: 7, wraps: [] }));
  assert.equal(s.channel!.version, 10, "never backwards");
});

Deno.test("deployed UPDATED shapes: `added` ids (strings or objects) become members, `removed` changes nothing", () => {
  const s = withChannel();
  s.channel!.members.add("gone");
  const out = new Out(s, T0);
  onChannelUpdated(
    out,
    link,
    frame("PUBLIC_CHANNEL_UPDATED", {
      version: 6,
      added: [ALICE, { user_id: BOB }, { x: 1 }],
      removed: ["gone"],
    }),
  );
  assert.deepEqual([...s.channel!.members].sort(), ["gone", ALICE, BOB].sort());
});

Deno.test("channelReady adopts the key, and every local user joins; a key share from a server goes to its members here", () => {
  const s = initState(config());
  s.channelPending = true;
  s.users.set(ALICE, alice);
  s.localUsers.set(ALICE, 1);
  const out = new Out(s, T0);
  channelReady(out, 1, "CH");
  assert.equal(s.channelPending, false);
  assert.equal(s.channel?.creatorPub, "CH");
  assert.ok(s.channel!.members.has(ALICE));
  const share = new Out(s, T0);
  const f = frame("PUBLIC_CHANNEL_KEY_SHARE", {
    shares: [{ member: ALICE, wrapped_public_channel_key: "w" }, {
      member: BOB,
      wrapped_public_channel_key: "w",
    }],
    creator_pub: "CH",
    content_sig: "c",
  });
  onKeyShareFromServer(share, link, f);
  assert.deepEqual(share.effects.map((e) => e.kind === "send" ? e.conn : -1), [1], "only Alice is here");
});
