/**
 * A simulated user driven by the real client core (lib/client/core.ts `ClientCore`): the core says hello, keeps
 * the directory and its contacts' keys, sends DMs, tracks their states (sending, sent, accepted), sends again what
 * was not accepted after a reconnect, and shows each delivered DM once (its dedupe by sender and ciphertext). The
 * simulation is its shell: it carries the frames, feeds the time, and answers the core's crypto requests with
 * simulated crypto (as the nodes' signatures are simulated): a signature by key K is `sim:<alias of K>`, a
 * ciphertext for key K is `ct.<DM id>~<alias of K>~<base64url of the plaintext>` (the DM id up front so that the
 * network can tell which DM a frame carries, as for the stub users).
 */
import { ClientCore } from "../../lib/client/core.ts";
import type { CryptoOp, CryptoResult, OutgoingMessage } from "../../lib/client/types.ts";
import { keyFingerprint } from "../../lib/client/trust.ts";
import { decodeBase64Url, encodeBase64Url } from "../../lib/protocol/base64url.ts";
import { sha256 } from "../../lib/protocol/sha256.ts";
import type { Pipe, SimNode } from "./sim.ts";

/** What a client user needs from the simulation. */
export interface ClientShell {
  /** The simulated clock. */
  now(): number;
  /** The alias of a public key (`sim:<alias>` is its signature). */
  alias(key: string): string | undefined;
  /** Put a frame on the user's connection, when it has one. */
  send(user: ClientUser, text: string): void;
}

/** One DM a client user sent: its text (a DM id) and its recipient. */
export interface ClientDm {
  id: string;
  from: string;
  to: string;
  message: OutgoingMessage;
}

/** A user of the simulation whose protocol side is a `ClientCore`. */
export class ClientUser {
  readonly core: ClientCore;
  /** DMs shown to this user, by text (a DM id): how many times. */
  readonly shown = new Map<string, number>();
  /** False while the user does not read its connection. */
  reading = true;
  /** The node this user always connects to. */
  home: SimNode | null = null;
  /** The connection, while there is one, and the node at its other end. */
  pipe: Pipe | null = null;
  node: SimNode | null = null;

  constructor(
    private readonly shell: ClientShell,
    readonly userId: string,
    readonly key: string,
  ) {
    this.core = new ClientCore({ userId, publicKey: key, displayName: `u${userId.slice(-3)}` });
  }

  /** The user's contacts from "earlier sessions": everyone in the simulation, with their keys. */
  know(users: { userId: string; key: string }[]): void {
    this.core.addContacts(
      users.filter((u) => u.userId !== this.userId).map((u) => ({
        userId: u.userId,
        name: `u${u.userId.slice(-3)}`,
        pubkey: u.key,
        fingerprint: keyFingerprint(u.key),
        serverId: "",
      })),
    );
  }

  /** Online: the server accepted the hello. */
  get online(): boolean {
    return this.core.phase === "online";
  }

  /** The socket opened. */
  opened(nonce: string): void {
    this.core.opened(this.shell.now(), nonce);
    this.pump();
  }

  /** A frame arrived. */
  frame(text: string): void {
    this.core.frame(text, this.shell.now());
    this.pump();
  }

  /** The socket closed. */
  closed(): void {
    this.core.closed(this.shell.now(), 1006, "");
    this.pump();
  }

  /** Time passes (the hello rule, the snapshot wait). */
  tick(): void {
    this.core.tick(this.shell.now());
    this.pump();
  }

  /** Send a DM whose text is `id`; null when the core will not (not ready, unknown recipient). */
  tell(to: string, id: string): OutgoingMessage | null {
    try {
      const { message } = this.core.tell(to, id, this.shell.now());
      this.pump();
      return message;
    } catch {
      return null;
    }
  }

  /** Carry out what the core asked for until it asks for nothing more. */
  private pump(): void {
    for (let outs = this.core.drain(); outs.length > 0; outs = this.core.drain()) {
      for (const o of outs) {
        if (o.kind === "send") this.shell.send(this, o.text);
        else if (o.kind === "crypto") this.core.cryptoDone(o.id, this.crypto(o.op), this.shell.now());
        else if (o.kind === "event" && o.event.kind === "dm") {
          const text = o.event.text;
          this.shown.set(text, (this.shown.get(text) ?? 0) + 1);
        }
      }
    }
  }

  /** Simulated crypto (see the module documentation). */
  private crypto(op: CryptoOp): CryptoResult {
    switch (op.op) {
      case "sign":
        return `sim:${this.shell.alias(this.key)}`;
      case "verify":
        return op.sig === `sim:${this.shell.alias(op.key)}` ? 0 : -1;
      case "encrypt": {
        const to = this.shell.alias(op.key);
        if (to === undefined) return null;
        const id = /dm-[0-9]+-c[0-9]+/.exec(new TextDecoder().decode(op.data))?.[0] ?? "x";
        return `ct.${id}~${to}~${encodeBase64Url(op.data)}`;
      }
      case "decrypt": {
        const [, to, data] = op.ciphertext.split("~");
        if (op.with === "user" && to !== this.shell.alias(this.key)) return null;
        try {
          return decodeBase64Url(data ?? "");
        } catch {
          return null;
        }
      }
      case "sha256":
        return sha256(op.data);
      case "openChannelKey":
        return true;
      case "all":
        return op.ops.map((o) => this.crypto(o));
    }
  }
}
