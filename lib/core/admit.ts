/**
 * The introducer's side of joining (SOCP §8, PROFILE §12, §16): SERVER_HELLO_JOIN on an inbound connection, the
 * id it gets and the SERVER_WELCOME that answers it (our id, the servers we are linked to, the users online, the
 * public channel). The joiner's side is in join.ts.
 *
 * @module
 */
import { type Envelope, isServerId } from "../protocol/envelope.ts";
import { sameKeyMaterial } from "../protocol/keys.ts";
import { SOFTWARE } from "../protocol/version.ts";
import { takeJoinToken } from "./limits.ts";
import { checkServerKey, isPemDialect, linkUp, ourKeyFor, pin } from "./links.ts";
import type { Out } from "./out.ts";
import type { Conn, State } from "./types.ts";

/** The servers a welcome lists: us, then every server we are linked to. */
function serverEntries(state: State): { server_id: string; host: string; port: number; pubkey: string }[] {
  const self = {
    server_id: state.config.serverId,
    host: state.advertise.host,
    port: state.advertise.port,
    pubkey: state.config.serverPub,
  };
  const others = [...state.links.keys()].flatMap((id) => {
    const r = state.servers.get(id);
    return r ? [{ server_id: id, host: r.host, port: r.port, pubkey: r.pubkey }] : [];
  });
  return [self, ...others];
}

/** SERVER_HELLO_JOIN on a fresh inbound connection: admit the server and welcome it (PROFILE §12). */
export function onJoin(
  out: Out,
  conn: Conn,
  env: Envelope<"SERVER_HELLO_JOIN">,
  fresh: string | undefined,
): void {
  const { state } = out;
  const p = env.payload;
  if (!takeJoinToken(state, conn.addr, out.now)) {
    const { joinPerMin, joinBurst } = state.config.limits;
    out.error(
      conn.id,
      env.from,
      "UNKNOWN_TYPE",
      `too many SERVER_HELLO_JOINs from your address (at most ${joinPerMin} a minute, ${joinBurst} at once): try again later`,
    );
    return out.close(conn.id, 1008, "join rate limit");
  }
  if (!checkServerKey(out, conn, p.pubkey, env.from)) return;
  const requested = env.from;
  const signed = out.sig === "valid";
  // PROFILE §16: a JOIN presenting a pinned server's key must be signed by it (the key is public: it is on that
  // server's /.well-known/socp). Without the signature it is a stranger holding someone else's key: refused.
  const owner = [...state.servers.values()].find((r) => !r.claimed && sameKeyMaterial(r.pubkey, p.pubkey));
  if (!signed && owner) {
    out.log("warn", "join.refused", {
      server: requested,
      reason: `unsigned JOIN presents the pinned key of server ${owner.serverId}`,
      addr: conn.addr,
    });
    out.error(
      conn.id,
      requested,
      "INVALID_SIG",
      `this key is pinned to a server of this network: sign SERVER_HELLO_JOIN with it`,
    );
    return out.close(conn.id, 1008, "unsigned JOIN with a pinned key");
  }
  const pinned = state.servers.get(requested);
  // A pinned id is the joiner's only when it proves the pinned key; anyone else is a stranger with a fresh id.
  const taken = !isServerId(requested) || requested === state.config.serverId ||
    (pinned !== undefined && (!signed || !sameKeyMaterial(pinned.pubkey, p.pubkey)));
  const assigned = taken ? (fresh ?? `${requested}-1`) : requested;
  conn.pemDialect = isPemDialect(p.pubkey);
  // An unsigned JOIN's pin lives only as long as its link unless a verified frame comes over it, and its
  // address (unsigned) is never dialed: the joiner redials us. A signed JOIN vouches for its own address.
  pin(out, {
    serverId: assigned,
    host: p.host,
    port: p.port,
    pubkey: p.pubkey,
    ...(signed ? {} : { noDial: true as const, claimed: true as const }),
  });
  const welcome = out.frame("SERVER_WELCOME", assigned, {
    assigned_id: assigned,
    servers: serverEntries(state).map((s) =>
      s.server_id === state.config.serverId ? { ...s, pubkey: ourKeyFor(state, conn) } : s
    ),
    clients: [...state.presence.values()].map((u) => {
      const home = u.serverId === state.config.serverId ? state.advertise : state.servers.get(u.serverId);
      return {
        user_id: u.userId,
        host: home?.host ?? "",
        port: home?.port ?? 0,
        pubkey: u.advert.payload.pubkey ?? "",
      };
    }),
    server_pub: ourKeyFor(state, conn),
    // PROFILE §15: joiners that read the introducer's key from `pubkey` and its address from `host`/`port`.
    pubkey: ourKeyFor(state, conn),
    host: state.advertise.host,
    port: state.advertise.port,
    software: SOFTWARE,
  });
  // PROFILE §8: the channel's private key travels to the joiner wrapped under the joiner's key (the shell seals).
  if (state.channel) {
    welcome.payload.public_channel = {
      version: state.channel.version,
      creator_pub: state.channel.creatorPub,
      wrapped_key: "",
    };
    out.send(conn.id, welcome, true, { kind: "welcome", forKey: p.pubkey });
  } else {
    out.send(conn.id, welcome);
  }
  out.log("info", "server.joined", {
    server: assigned,
    requested,
    host: p.host,
    port: p.port,
    reassigned: taken,
  });
  linkUp(out, conn, assigned, assigned);
}
