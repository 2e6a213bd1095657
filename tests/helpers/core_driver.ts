/**
 * Drives a {@linkcode ClientCore} without sockets: frames in as text, the crypto it asks for carried out with
 * WebCrypto, the time given explicitly; collects the frames it sends and the events it reports.
 */
import { ClientCore, type CoreOptions } from "../../lib/client/core.ts";
import type { ClientEvent, Output } from "../../lib/client/types.ts";
import { WebCryptoRunner } from "../../lib/client/webcrypto.ts";
import type { PrivateKey } from "../../lib/crypto/rsa.ts";
import { signaturePreimages } from "../../lib/protocol/canonical_json.ts";

// deno-lint-ignore no-explicit-any
export type Frame = any;

export class CoreDriver {
  readonly core: ClientCore;
  readonly crypto: WebCryptoRunner;
  /** Frames the core sent, parsed. */
  readonly sent: Frame[] = [];
  readonly events: ClientEvent[] = [];
  readonly settled: { ticket: number; error?: string }[] = [];
  now = 1_700_000_000_000;

  constructor(readonly key: PrivateKey, readonly opts: Partial<CoreOptions> & { userId: string }) {
    this.core = new ClientCore({ publicKey: key.publicKey, ...opts });
    this.crypto = new WebCryptoRunner(key);
  }

  /** Carry out every output until the core is idle (all crypto answered). */
  async settle(): Promise<Output[]> {
    const all: Output[] = [];
    while (true) {
      const outs = this.core.drain();
      if (outs.length === 0) return all;
      all.push(...outs);
      const pending: Promise<void>[] = [];
      for (const o of outs) {
        if (o.kind === "send") this.sent.push(JSON.parse(o.text));
        else if (o.kind === "event") this.events.push(o.event);
        else if (o.kind === "settled") this.settled.push(o);
        else if (o.kind === "crypto") {
          pending.push(this.crypto.run(o.op).then((r) => this.core.cryptoDone(o.id, r, this.now)));
        }
      }
      await Promise.all(pending);
    }
  }

  /** Open the connection (the hello is signed and sent). */
  async open(): Promise<Frame> {
    this.core.opened(this.now, "nonce-" + this.now);
    await this.settle();
    return this.sent.at(-1);
  }

  /** Our server's signed answer to the hello (an ACK naming it, with `extra` in its payload), fed and settled. */
  async helloAck(server: PrivateKey, serverId: string, extra: Record<string, unknown> = {}): Promise<void> {
    await this.frame(
      await signed(server, {
        type: "ACK",
        from: serverId,
        to: this.opts.userId,
        payload: { msg_ref: "USER_HELLO", server_id: serverId, server_pub: server.publicKey, ...extra },
      }),
    );
  }

  /** Our server's signed adverts of `users` (id, key, display name), fed and settled. */
  async adverts(
    server: PrivateKey,
    serverId: string,
    users: readonly (readonly [string, PrivateKey, string])[],
  ) {
    for (const [id, key, name] of users) {
      await this.frame(
        await signed(server, {
          type: "USER_ADVERTISE",
          from: serverId,
          to: "*",
          payload: { user_id: id, server_id: serverId, pubkey: key.publicKey, meta: { display_name: name } },
        }),
      );
    }
  }

  /** Feed a frame (object or text) and settle. */
  async frame(f: Frame | string): Promise<void> {
    this.core.frame(typeof f === "string" ? f : JSON.stringify(f), this.now);
    await this.settle();
  }

  async tick(ms: number): Promise<void> {
    this.now += ms;
    this.core.tick(this.now);
    await this.settle();
  }

  of<K extends ClientEvent["kind"]>(kind: K): Extract<ClientEvent, { kind: K }>[] {
    return this.events.filter((e) => e.kind === kind) as Extract<ClientEvent, { kind: K }>[];
  }
}

/** A frame signed by `key` over its canonical payload. */
export async function signed(key: PrivateKey, f: Frame): Promise<Frame> {
  return { ts: Date.now(), to: "*", ...f, sig: await key.sign(signaturePreimages(f.payload)[0]) };
}
