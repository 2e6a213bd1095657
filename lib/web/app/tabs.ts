/// <reference lib="dom" />
/**
 * Tab leadership: one connection per identity and browser. Every tab of the app runs a Session; one of them,
 * the *leader* (it holds the Web Lock `socp-tab-<user id>`), owns the client and the history; the others are
 * *followers*: they ask the leader (BroadcastChannel `socp-tab-<user id>`) for a snapshot, mirror every change
 * it announces, and hand it what their user does (send, accept a file, mark read). When the leader tab closes,
 * the lock passes to a follower, which connects in its place (and says so: `lead`).
 *
 * **Hand-overs are confirmed.** A message or file written in a follower goes to the leader as `send` under an
 * id and time the follower chose, and the follower keeps it (handovers.ts, handover_queue.ts: bounded) until
 * the leader says `took`. The leader takes an id once: it adds the message, waits until it is written to the
 * shared history on disk, says `took` (a file: its `msg` beyond "sending" confirms it, as its bytes are only in
 * the leader's page until sent), and only then hands it to the client core. Without that the follower hands it
 * again at a deadline
 * (the same id, so a leader that got it twice sends it once), at once to a new leader, and sends it itself once
 * it leads; a leader tab closing as the hand-over arrives loses nothing.
 *
 * This module holds the channel, the election and the leader's view of which tab shows what; the messages and
 * how each side applies them are in tab_messages.ts (no DOM, so unit tests can load them).
 *
 * @module
 */
import type { FromLeader, TabChannel, TabView, ToLeader } from "./tab_messages.ts";

export {
  applyFromLeader,
  applyToLeader,
  type Follower,
  type FromLeader,
  type Handed,
  type Leader,
  type TabChannel,
  type ToLeader,
} from "./tab_messages.ts";

/** This tab's end of the channel between the tabs of one identity, and the election of the leader. */
export class Tabs implements TabChannel {
  /** This tab's id. */
  readonly id = crypto.randomUUID();
  private readonly chan: BroadcastChannel | null;
  /** The leader's view of the tabs: which conversation each shows, and whether it is visible. */
  private readonly shown = new Map<string, TabView>();
  private release: (() => void) | null = null;

  /** The channel of `userId`'s tabs; `onMessage` gets what the other tabs post. */
  constructor(private readonly userId: string, onMessage: (d: FromLeader | ToLeader) => void) {
    this.chan = typeof BroadcastChannel === "function" ? new BroadcastChannel(`socp-tab-${userId}`) : null;
    if (this.chan) this.chan.onmessage = (e) => onMessage(e.data);
  }

  /** Tell the other tabs. */
  post(msg: FromLeader | ToLeader): void {
    try {
      this.chan?.postMessage(msg);
    } catch { /* closed */ }
  }

  /**
   * Take the lock if free (`lead(false)`), else `follow()` and queue for it (`lead(true)` once it passes to us,
   * unless `stopped()` by then). Without Web Locks or BroadcastChannel every tab leads.
   */
  elect(lead: (handover: boolean) => void, follow: () => void, stopped: () => boolean): void {
    const locks = (navigator as Navigator & { locks?: LockManager }).locks;
    if (!locks || !this.chan) return lead(false);
    const name = `socp-tab-${this.userId}`;
    const hold = () => new Promise<void>((resolve) => (this.release = resolve));
    locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock) {
        lead(false);
        return hold();
      }
      follow();
      locks.request(name, () => {
        if (stopped()) return;
        lead(true);
        return hold();
      }).catch(() => {});
      return undefined;
    }).catch(() => lead(false));
  }

  /** Give up the lock (sign-out). */
  resign(): void {
    this.release?.();
  }

  /** Follower: ask for the leader's state every second until `answered()` (the leader may still be loading). */
  askLeader(answered: () => boolean): void {
    let tries = 0;
    const ask = () => {
      if (answered() || tries++ > 60) return;
      this.post({ t: "hello" });
      setTimeout(ask, 1000);
    };
    ask();
  }

  /** Leader: tab `tab` shows `view` (or closed: `null`). */
  see(tab: string, view: TabView | null): void {
    if (view) this.shown.set(tab, view);
    else this.shown.delete(tab);
  }

  /** Leader: true when the user looks at some tab of ours. */
  anyVisible(): boolean {
    for (const t of this.shown.values()) if (t.visible) return true;
    return false;
  }

  /** Leader: true when some tab of ours shows `conv` to the user now. */
  showing(conv: string): boolean {
    for (const t of this.shown.values()) if (t.visible && t.current === conv) return true;
    return false;
  }
}
