/**
 * The leader tab's connection to the server: the {@linkcode SocpClient}'s life, and the status the app shows for
 * it. The first connection is retried with backoff; a tab taking over from a leader that just closed tries a few
 * times more while the server still holds the old session (NAME_IN_USE).
 *
 * **Another device.** The same identity connected elsewhere (the server refuses with NAME_IN_USE, or closes this
 * session because a newer one took over) is said in words, and the link stops: it connects again only when the
 * user asks (no reconnect war).
 *
 * @module
 */
import { type ClientEvent, type ConnectOptions, HelloRefused, SocpClient } from "../../client/client.ts";
import type { Identity } from "./identity.ts";
import type { LinkStatus } from "./model.ts";

const MAX_BACKOFF_MS = 30_000;
/** After the leader tab closed, the server may not have seen its socket close yet: a few tries, then ask. */
const HANDOVER_TRIES = 4;

/** A close or error from the server that says a newer session of this identity took over. */
const TAKEN_OVER =
  /elsewhere|another (session|connection|device)|newer session|taken over|took over|superseded|replaced/i;

/** What the link needs from the session. */
export interface LinkHost {
  readonly me: Identity;
  /** The server's WebSocket address. */
  readonly wsUrl: string;
  /** The status shown now. */
  status(): LinkStatus;
  setStatus(s: LinkStatus): void;
  /** Options for the connection beyond the identity (the store, file size, channel key hook). */
  options(): Omit<ConnectOptions, "userId" | "key" | "displayName">;
  /** The client is connected (its events go to the session from now on). */
  connected(c: SocpClient): void;
}

/** The leader's connection. */
export class Link {
  /** The connected client (null before the first connection, and after another session took over). */
  client: SocpClient | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;

  /** The link of `host`. */
  constructor(private readonly host: LinkHost) {}

  /** Connect (a tab taking over from a closed leader: `handover`). */
  start(handover: boolean): void {
    this.connectFirst(handover ? HANDOVER_TRIES : 1);
  }

  /** True once stopped (sign-out, or the page is going). */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Stop and close. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.client?.close(1000);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => (this.wake = null, resolve()), ms);
      this.wake = () => (clearTimeout(t), this.wake = null, resolve());
    });
  }

  private async connectFirst(nameInUseTries: number): Promise<void> {
    const host = this.host;
    let delay = 1000;
    let inUse = 0;
    for (let attempt = 1; !this.stopped; attempt++) {
      host.setStatus({ kind: "connecting", attempt });
      try {
        const c = await SocpClient.connect(host.wsUrl, {
          userId: host.me.userId,
          key: host.me.key,
          displayName: host.me.displayName,
          timeoutMs: 20_000,
          holdFiles: true,
          ...host.options(),
        });
        if (this.stopped) {
          await c.close(1000);
          return;
        }
        this.client = c;
        host.connected(c);
        return;
      } catch (e) {
        if (e instanceof HelloRefused) {
          if (e.code === "NAME_IN_USE" && ++inUse < nameInUseTries) {
            // Taking over from a tab of ours that just closed: its socket may not be closed at the server yet.
            host.setStatus({ kind: "connecting", attempt });
            await this.sleep(1500);
            continue;
          }
          host.setStatus(refusal(e.code, e.message));
          return;
        }
        host.setStatus({ kind: "offline", retryAt: Date.now() + delay, reason: (e as Error).message });
        await this.sleep(delay);
        delay = Math.min(delay * 2, MAX_BACKOFF_MS);
      }
    }
  }

  /** Handle the client's events about the connection; false for the others. */
  onEvent(e: ClientEvent): boolean {
    const host = this.host;
    const st = host.status().kind;
    switch (e.kind) {
      case "ready":
        host.setStatus({ kind: "online" });
        return false; // the people changed too
      case "closed":
        if (e.code === 4001 || TAKEN_OVER.test(e.reason)) this.takenOver();
        else if (st !== "elsewhere" && st !== "refused") {
          host.setStatus({ kind: "offline", retryAt: 0, reason: "connection lost" });
        }
        return true;
      case "reconnecting":
        if (st === "elsewhere") return true;
        host.setStatus({
          kind: "offline",
          retryAt: Date.now() + e.inMs,
          reason: e.error?.startsWith("cannot connect") ? "the server cannot be reached" : "connection lost",
        });
        return true;
      case "refused":
        host.setStatus(refusal(e.code, e.detail));
        return true;
      case "error":
        // A newer session of ours took over (the server says so, then closes with 4001).
        if (e.code === "NAME_IN_USE" || TAKEN_OVER.test(e.detail)) {
          this.takenOver();
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  /** A newer session of this identity took over: stop here (no reconnect) and say so. */
  private takenOver(): void {
    const c = this.client;
    this.client = null;
    c?.close(1000);
    this.host.setStatus(takenOverStatus());
  }

  /** Offline: try now instead of at the end of the wait (the button "Retry now"). */
  retryNow(): void {
    if (this.client) this.client.retryNow();
    else this.wake?.();
  }

  /** After "signed in elsewhere" or a refusal: connect again (only when the user asks). */
  reconnect(): void {
    const st = this.host.status().kind;
    if (st !== "elsewhere" && st !== "refused") return;
    const old = this.client;
    this.client = null;
    old?.close(1000);
    this.connectFirst(1);
  }
}

function takenOverStatus(): LinkStatus {
  return {
    kind: "elsewhere",
    reason: "Signed in elsewhere: this identity connected from another device or browser, which took over. " +
      "Messages go there now.",
  };
}

/** How a refused hello is shown: in words, never as the raw code. */
function refusal(code: string, detail: string): LinkStatus {
  if (/signed in elsewhere|took over/i.test(detail)) return takenOverStatus();
  if (code === "NAME_IN_USE" || TAKEN_OVER.test(detail)) {
    return {
      kind: "elsewhere",
      reason: "This identity is connected from another device or browser. " +
        "Messages go there while it is connected.",
    };
  }
  return {
    kind: "refused",
    reason: `The server did not accept this identity (${
      detail.replace(/^[A-Z_]+:\s*/, "") || "no reason given"
    }).`,
  };
}
