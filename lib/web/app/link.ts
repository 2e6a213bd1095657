/**
 * The leader tab's connection to the server: the {@linkcode SocpClient}'s life, and the status the app shows for
 * it. The client is made when this tab leads and exists while offline; the client core connects, retries with
 * backoff (the first connection too) and keeps what is written meanwhile. A tab taking over from a leader that
 * just closed tries again a few times while the server still holds the old session (NAME_IN_USE).
 *
 * **Another device.** The same identity connected elsewhere (the server refuses with NAME_IN_USE, or closes this
 * session because a newer one took over) is said in words, and the link stops: it connects again only when the
 * user asks (no reconnect war).
 *
 * @module
 */
import { type ClientEvent, type ConnectOptions, SocpClient } from "../../client/client.ts";
import type { Identity } from "./identity.ts";
import type { LinkStatus } from "./model.ts";

/** After the leader tab closed, the server may not have seen its socket close yet: a few tries, then ask. */
const HANDOVER_TRIES = 4;
/** How long a tab taking over waits before it tries again. */
const HANDOVER_WAIT_MS = 1500;

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
  /** Options for the client beyond the identity (the store, the file size, the crypto runner). */
  options(): Omit<ConnectOptions, "userId" | "key" | "displayName">;
  /** The client was made: its events go to the session from now on. */
  attach(c: SocpClient): void;
}

/** The leader's connection. */
export class Link {
  /** The client (null until this tab leads). */
  client: SocpClient | null = null;
  private making: Promise<SocpClient> | null = null;
  private stopped = false;
  /** NAME_IN_USE refusals still to try again after (taking over from a tab that just closed). */
  private handoverLeft = 0;
  private handoverTimer: ReturnType<typeof setTimeout> | undefined;

  /** The link of `host`. */
  constructor(private readonly host: LinkHost) {}

  /** The client, made (offline) on first use. */
  get(): Promise<SocpClient> {
    const host = this.host;
    return this.making ??= SocpClient.create(host.wsUrl, {
      userId: host.me.userId,
      key: host.me.key,
      displayName: host.me.displayName,
      timeoutMs: 20_000,
      holdFiles: true,
      ...host.options(),
    }).then((c) => {
      this.client = c;
      host.attach(c);
      return c;
    });
  }

  /** Connect (a tab taking over from a closed leader: `handover`). */
  async start(handover: boolean): Promise<void> {
    this.handoverLeft = handover ? HANDOVER_TRIES - 1 : 0;
    this.host.setStatus({ kind: "connecting", attempt: 1 });
    const c = await this.get();
    if (!this.stopped) c.start();
  }

  /** True once stopped (sign-out). */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Stop and close. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.handoverTimer);
    await this.client?.close(1000);
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
        if (TAKEN_OVER.test(e.reason)) this.takenOver();
        else if (st !== "elsewhere" && st !== "refused") {
          host.setStatus({ kind: "offline", retryAt: 0, reason: "connection lost" });
        }
        return true;
      case "reconnecting":
        if (st === "elsewhere" || st === "refused") return true;
        host.setStatus({
          kind: "offline",
          retryAt: Date.now() + e.inMs,
          reason: e.error?.startsWith("cannot connect") ? "the server cannot be reached" : "connection lost",
        });
        return true;
      case "refused":
        if (e.code === "NAME_IN_USE" && this.handoverLeft > 0) {
          // Taking over from a tab of ours that just closed: its socket may not be closed at the server yet.
          this.handoverLeft--;
          host.setStatus({ kind: "connecting", attempt: 1 });
          this.handoverTimer = setTimeout(() => this.startAgain(), HANDOVER_WAIT_MS);
        } else host.setStatus(refusal(e.code, e.detail));
        return true;
      case "error":
        // A newer session of ours took over (the server says so, then closes).
        if (e.code === "NAME_IN_USE" || TAKEN_OVER.test(e.detail)) {
          this.takenOver();
          return true;
        }
        return false;
      default:
        return false;
    }
  }

  private startAgain(): void {
    clearTimeout(this.handoverTimer);
    this.handoverTimer = undefined;
    if (!this.stopped) this.client?.start();
  }

  /** A newer session of this identity took over: stop here (no reconnect) and say so. */
  private takenOver(): void {
    this.client?.close(1000);
    this.host.setStatus(takenOverStatus());
  }

  /** Offline: try now instead of at the end of the wait (the button "Retry now"). */
  retryNow(): void {
    if (this.handoverTimer !== undefined) this.startAgain();
    else this.client?.retryNow();
  }

  /** After "signed in elsewhere" or a refusal: connect again (only when the user asks). */
  reconnect(): void {
    const st = this.host.status().kind;
    if (st !== "elsewhere" && st !== "refused") return;
    this.host.setStatus({ kind: "connecting", attempt: 1 });
    this.client?.start();
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
