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
import { onAnnounce, onRemoteAdvert, onRemoteRemove, restoresPresence } from "./gossip.ts";
import { onJoin } from "./admit.ts";
import { onRelinkWelcome, onWelcome, welcomeNotFromEntry } from "./join.ts";
import { onLinkHello } from "./links.ts";
import { ack, outboxAcked } from "./offline.ts";
import type { Out } from "./out.ts";
import { direct, serverDeliver } from "./routing.ts";
import type { Conn, Role, SigCheck, State } from "./types.ts";
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
  /**
   * Only in memory with `replay: "payload"`: the key is not kept across restarts (a chunk of a transfer the node
   * no longer knows goes nowhere).
   */
  replayInMemory?: true;
  /** PROFILE §16: the signed time a relayed or forwarded frame's freshness is judged on (a payload field). */
  signedTime?: (env: Envelope<T>) => number | undefined;
  /**
   * A copy the seen cache already holds: what to do besides dropping it (`digest`: its payload digest), e.g.
   * confirm again a resent frame whose first confirmation was lost.
   */
  onDuplicate?: (out: Out, conn: Conn, env: Envelope<T>, digest: string) => void;
  /** A copy the seen cache holds is handled all the same when this says so (it was ignored, not applied). */
  notDuplicate?: (state: State, env: Envelope<T>) => boolean;
  /**
   * Never answered with an ERROR (two peers would bounce them forever): refused or unreadable, it is logged. A
   * type name of an unparsed frame counts too.
   */
  quiet?: true;
  /**
   * On a connection we dialed, before it is a link or has its welcome: the peer's answer to our hello, handled
   * by this before any other check (an ERROR refusing it).
   */
  answersOurHello?: (out: Out, conn: Conn, env: Envelope<T>) => void;
  /**
   * On a join dial, when the frame is not signed by the bootstrap entry's key: handled by this instead (PROFILE
   * §16: the join failed).
   */
  unverifiedJoinAnswer?: (out: Out, conn: Conn, env: Envelope<T>, sig: SigCheck) => void;
  /**
   * On a connection we dialed, before it is up: verified with the key we dialed for (the bootstrap entry's or the
   * pinned one), never as a frame of the link (verify.ts).
   */
  dialKey?: true;
  /** As an inbound first frame, verified with the key pinned for its `from` (PROFILE §15 dial-back; verify.ts). */
  pinnedFirst?: true;
  /**
   * On a link, a frame that may come from a server not pinned yet: the key it presents (verified with that when
   * its `from` is not pinned; never read as signed under an alias when it presents one; verify.ts).
   */
  presented?: (env: Envelope<T>) => string | undefined;
  /** Refused on a connection already identified: said so (rather than "not accepted from a user"). */
  onlyFirst?: true;
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
  USER_HELLO: { from: { pending: hello }, sign: "links", fresh: "origin", hello: "user", onlyFirst: true },
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
    presented: (env) => env.payload.pubkey, // a newcomer announcing itself, relayed before we pinned it
  },
  SERVER_WELCOME: {
    from: { dialed: onWelcome },
    sign: "links",
    fresh: "origin",
    relayedHello: true,
    relink: onRelinkWelcome,
    unverifiedJoinAnswer: welcomeNotFromEntry,
    dialKey: true,
  },
  SERVER_PRESENCE_SYNC: {
    from: { pending: onDialBack, server: onPresenceSync },
    sign: "always",
    fresh: "origin",
    closeOnRefusal: true,
    pinnedFirst: true,
  },
  USER_ADVERTISE: {
    from: { server: onRemoteAdvert },
    sign: "links",
    fresh: "origin",
    notDuplicate: restoresPresence,
  },
  USER_REMOVE: { from: { server: onRemoteRemove }, sign: "links", fresh: "origin" },
  SERVER_DELIVER: {
    from: { server: serverDeliver },
    sign: "links",
    fresh: "origin",
    replay: "payload",
    signedTime: (env) => env.payload.fwd_ts ?? env.payload.orig_ts ?? env.payload.cts,
    // A resent outbox frame we already hold: confirm again, or the sender keeps resending it.
    onDuplicate: (out, conn, env, digest) => {
      if (env.payload.ack && conn.role === "server") ack(out, conn.id, conn.serverId ?? env.from, digest);
    },
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
    replayInMemory: true,
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
  ERROR: {
    from: { server: logOnly, pending: logOnly, dialed: logOnly },
    sign: "links",
    fresh: "origin",
    quiet: true,
    dialKey: true,
    // The peer refused our hello. A refused LINK is redialed with JOIN (PROFILE §15): see dialFailed. A refused
    // JOIN is abandoned: the close leads to the next bootstrap entry, and the list is retried with backoff.
    answersOurHello: (out, conn, env) => {
      logOnly(out, conn, env);
      out.close(conn.id, 1000, `${env.type} ${env.payload.code} in answer to our hello`);
    },
  },
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

/** The row of `type`, an unparsed frame's type name (maybe no message type at all). */
export function ruleOfName(type: string | undefined): Rule<MessageType> | undefined {
  return type !== undefined && isMessageType(type) ? RULES[type] as Rule<MessageType> | undefined : undefined;
}

/** True when the row of `type` (an unparsed frame's type name, maybe no message type at all) is `tolerant`. */
export function tolerated(type: string | undefined): boolean {
  return ruleOfName(type)?.tolerant === true;
}

/** True for a frame whose row says `from` is a user (PROFILE §3 re-signing, §15 echoes). */
export function userOriginated(env: AnyEnvelope): boolean {
  return ruleOf(env)?.userOriginated === true;
}

/** True for a hello that presents its sender's key (narrowing `env` to the hello types). */
export function presentsKey(env: AnyEnvelope): env is Envelope<HelloType> & AnyEnvelope {
  return ruleOf(env)?.hello !== undefined;
}
