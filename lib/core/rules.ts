/**
 * The rule table: one row per message type this node accepts, the one place that lists every legal transition.
 * A row says from which connection roles the type is accepted and with which handler, whether it must be signed,
 * whether its freshness is checked, and how the deployed forms of PROFILE §15 (echoes, aliases, relayed hellos,
 * unreadable channel shapes) treat it. `reduce` (onFrame in reduce.ts) applies the rows; `expectedKey` (verify.ts)
 * reads them to pick the key a signature must verify with.
 *
 * To add a message type: give it a payload schema in lib/protocol/messages.ts (that makes it a `MessageType`),
 * write its handler taking `Envelope<"YOUR_TYPE">`, and add a row here. The row is typed by its key, so a handler
 * for another type is a compile error. A type without a row is refused with UNKNOWN_TYPE.
 *
 * @module
 */
import type { AnyEnvelope, Envelope } from "../protocol/envelope.ts";
import { isMessageType, type MessageType } from "../protocol/messages.ts";
import {
  onChannelAdd,
  onChannelUpdated,
  onKeyShareFromServer,
  publicFromServer,
  publicFromUser,
} from "./channel.ts";
import { onDialBack, onPresenceSync } from "./dial_back.ts";
import { onFile } from "./files.ts";
import { onAnnounce, onRemoteAdvert, onRemoteRemove } from "./gossip.ts";
import { onJoin, onRelinkWelcome, onWelcome } from "./join.ts";
import { onLinkHello } from "./links.ts";
import { outboxAcked } from "./offline.ts";
import type { Out } from "./out.ts";
import { direct, serverDeliver } from "./routing.ts";
import type { Conn, Role } from "./types.ts";
import { hello } from "./users.ts";

/** Handles one accepted frame of type `T` (`fresh`: a new UUID from the shell, for a step that needs an id). */
export type Handler<T extends MessageType> = (out: Out, conn: Conn, env: Envelope<T>, fresh?: string) => void;

/**
 * The role a frame is judged under: a connection's role, except that a connection we dialed is "dialed" until it
 * is a link (a link we dialed is judged as "server" from its first frame on, PROFILE §15).
 */
export type RuleRole = Role | "dialed";

/** First frames that identify their sender and present its key (`payload.pubkey`). */
export type HelloType = "USER_HELLO" | "SERVER_HELLO_JOIN" | "SERVER_HELLO_LINK" | "SERVER_ANNOUNCE";

/** One message type's row. */
export interface Rule<T extends MessageType> {
  /** The roles it is accepted from, each with its handler; any other role gets UNKNOWN_TYPE. */
  from: { [R in RuleRole]?: Handler<T> };
  /**
   * Signing policy (PROFILE §3). "links": a server's frame (on a link, or on a connection we dialed) must carry a
   * valid signature; a user's or an inbound first frame's is optional but must verify when present. "always":
   * also an inbound first frame must be signed. "unchecked": no `from`, signature, freshness or duplicate check.
   */
  sign: "links" | "always" | "unchecked";
  /**
   * Freshness policy (PROFILE §11). "origin": `ts` must be recent when the peer originated the frame (a relayed
   * frame keeps its original `ts`); "none": never checked.
   */
  fresh: "origin" | "none";
  /** `from` is a user: between servers the frame is re-signed by each forwarding server (verify.ts). */
  userOriginated?: true;
  /** A hello presenting the sender's key: an inbound first frame proves possession of that key (verify.ts). */
  hello?: T extends HelloType ? "user" | "server" : never;
  /** Another server's hello, relayed to us on an established link by servers that relay everything: ignored. */
  relayedHello?: true;
  /** Deployed shapes vary (PROFILE §15): on a server link, one we cannot read is ignored, not answered. */
  tolerant?: true;
  /** On a link we dialed, before it is up: the answer to the SERVER_HELLO_JOIN we re-linked with (PROFILE §15). */
  relink?: Handler<T>;
  /**
   * As an inbound first frame that fails its signature check, the connection is closed after the one ERROR: it
   * cannot be a link, and the peer has nothing else to say (PROFILE §15 dial-back).
   */
  closeOnRefusal?: true;
  /**
   * PROFILE §16 replays: "payload" keys the seen cache on type, originating server and payload digest (never on
   * envelope fields), and keeps the key across restarts. For types whose payloads repeat by design (hellos,
   * heartbeats, presence) the standard's envelope key stays.
   */
  replay?: "payload";
  /** PROFILE §16: the signed time a relayed or forwarded frame's freshness is judged on (a payload field). */
  signedTime?: (env: Envelope<T>) => number | undefined;
}

/** The rows, keyed by message type; each row's handlers take that type's envelope. */
export type Rules = { [T in MessageType]?: Rule<T> };

/** Logs a frame that needs no action (a peer's ERROR, an ACK we did not ask for). */
export const logOnly = (out: Out, conn: Conn, env: AnyEnvelope): void =>
  out.log("info", `peer.${env.type.toLowerCase()}`, {
    conn: conn.id,
    server: conn.serverId ?? env.from,
    ...(env.type === "ERROR" ? { code: env.payload.code, detail: env.payload.detail ?? "" } : {}),
  });

const closedByPeer = (out: Out, conn: Conn): void => out.close(conn.id, 1000, "closed by peer");

/** Every message type this node accepts. */
export const RULES: Rules = {
  USER_HELLO: { from: { pending: hello }, sign: "links", fresh: "origin", hello: "user" },
  MSG_DIRECT: {
    from: { user: (out, conn, env) => direct(out, conn.id, env) },
    sign: "links",
    fresh: "origin",
    replay: "payload",
  },
  SERVER_HELLO_JOIN: {
    from: { pending: onJoin },
    sign: "links", // a joiner's first frame may be unsigned (PROFILE §3)
    fresh: "origin",
    hello: "server",
    relayedHello: true,
  },
  SERVER_HELLO_LINK: {
    from: { pending: onLinkHello },
    sign: "always",
    fresh: "origin",
    hello: "server",
    relayedHello: true,
  },
  SERVER_ANNOUNCE: {
    from: { pending: onLinkHello, server: onAnnounce },
    sign: "always",
    fresh: "origin",
    hello: "server",
  },
  SERVER_WELCOME: {
    from: { dialed: onWelcome },
    sign: "links",
    fresh: "origin",
    relayedHello: true,
    relink: onRelinkWelcome,
  },
  SERVER_PRESENCE_SYNC: {
    from: { pending: onDialBack, server: onPresenceSync },
    sign: "always",
    fresh: "origin",
    closeOnRefusal: true,
  },
  USER_ADVERTISE: { from: { server: onRemoteAdvert }, sign: "links", fresh: "origin" },
  USER_REMOVE: { from: { server: onRemoteRemove }, sign: "links", fresh: "origin" },
  SERVER_DELIVER: {
    from: { server: serverDeliver },
    sign: "links",
    fresh: "origin",
    replay: "payload",
    signedTime: (env) => env.payload.fwd_ts ?? env.payload.orig_ts ?? env.payload.cts,
  },
  MSG_PUBLIC_CHANNEL: {
    from: { user: publicFromUser, server: publicFromServer },
    sign: "links",
    fresh: "origin",
    userOriginated: true,
    replay: "payload",
  },
  FILE_START: {
    from: { user: onFile, server: onFile },
    sign: "links",
    fresh: "origin",
    userOriginated: true,
    replay: "payload",
  },
  FILE_CHUNK: {
    from: { user: onFile, server: onFile },
    sign: "links",
    fresh: "origin",
    userOriginated: true,
    replay: "payload",
  },
  FILE_END: {
    from: { user: onFile, server: onFile },
    sign: "links",
    fresh: "origin",
    userOriginated: true,
    replay: "payload",
  },
  // A membership frame is never a strike (PROFILE §16): shapes we cannot read (an unsafe if_version) are ignored.
  PUBLIC_CHANNEL_ADD: {
    from: { server: onChannelAdd },
    sign: "links",
    fresh: "origin",
    tolerant: true,
    replay: "payload",
  },
  PUBLIC_CHANNEL_UPDATED: {
    from: { server: onChannelUpdated },
    sign: "links",
    fresh: "origin",
    tolerant: true,
    replay: "payload",
  },
  PUBLIC_CHANNEL_KEY_SHARE: {
    from: { server: onKeyShareFromServer },
    sign: "links",
    fresh: "origin",
    tolerant: true,
    replay: "payload",
  },
  HEARTBEAT: {
    from: {
      server: (_out, conn, env) => {
        if (env.from === conn.serverId) conn.peerHeartbeats = true; // not an echo or a relay of another's
      },
    },
    sign: "links",
    fresh: "origin",
  },
  ERROR: { from: { server: logOnly, pending: logOnly, dialed: logOnly }, sign: "links", fresh: "origin" },
  ACK: {
    from: {
      server: (out, conn, env) => {
        if (conn.serverId && out.state.outbox.get(conn.serverId)) {
          outboxAcked(out, conn.serverId, env.payload.msg_ref);
        } else logOnly(out, conn, env);
      },
    },
    sign: "links",
    fresh: "origin",
  },
  CTRL_CLOSE: {
    from: { pending: closedByPeer, dialed: closedByPeer, user: closedByPeer, server: closedByPeer },
    sign: "unchecked",
    fresh: "none",
  },
};

/** The row of a frame's type, typed by that type (undefined for a type this node does not accept). */
export function ruleOf<T extends MessageType>(env: Envelope<T>): Rule<T> | undefined {
  return RULES[env.type];
}

/** True when the row of `type` (an unparsed frame's type name, maybe no message type at all) is `tolerant`. */
export function tolerated(type: string | undefined): boolean {
  return type !== undefined && isMessageType(type) && RULES[type]?.tolerant === true;
}

/** True for a frame whose row says `from` is a user (PROFILE §3 re-signing, §15 echoes). */
export function userOriginated(env: AnyEnvelope): boolean {
  return ruleOf(env)?.userOriginated === true;
}

/** True for a hello that presents its sender's key (narrowing `env` to the hello types). */
export function presentsKey(env: AnyEnvelope): env is Envelope<HelloType> & AnyEnvelope {
  return ruleOf(env)?.hello !== undefined;
}
