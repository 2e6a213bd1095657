/**
 * The session's hand-overs between tabs (tabs.ts): a follower keeps what its user writes until the leader says
 * it took it, and hands it again at the queue's deadlines (handover_queue.ts) or at once to a new leader; the
 * leader takes each hand-over once, and confirms it once it is written to the history on disk, before the
 * client core gets it. The leader's own messages and files take the same path (stored, then sent).
 *
 * @module
 */
import type { Conversations } from "./conversations.ts";
import { HandoverQueue } from "./handover_queue.ts";
import type { ChatMessage } from "./model.ts";
import { type FromLeader, type Handed, TABS_VERSION, type ToLeader } from "./tab_messages.ts";

/** What the hand-overs need from the session. */
export interface HandoversHost {
  role(): "leader" | "follower" | "electing";
  /** Tell the other tabs. */
  post(msg: FromLeader | ToLeader): void;
  /** The conversations (a hand-over's message is shown, stored and told through them). */
  readonly model: Conversations;
  /** Settles once everything changed so far is written: true when on disk, false when not (failed, stopped). */
  written(): Promise<boolean>;
  /** Give our text message `m` to the client core, or send `file` as our message `m`. */
  carryOut(m: ChatMessage, file?: File): void;
  /** The leader is connected now (a file waits for that; text goes to the client core, which keeps it). */
  online(): boolean;
  /** The clock and the one timer (the page's unless a test gives others). */
  timers?: Timers;
}

/** The clock and timers the hand-overs use. */
export interface Timers {
  now(): number;
  set(f: () => void, ms: number): unknown;
  clear(id: unknown): void;
}

const pageTimers: Timers = {
  now: () => Date.now(),
  set: (f, ms) => setTimeout(f, ms),
  clear: (id) => clearTimeout(id as ReturnType<typeof setTimeout> | undefined),
};

/** One tab's hand-overs. */
export class Handovers {
  /** Follower: what it handed to the leader and was not confirmed (with how this tab shows each). */
  private readonly kept = new HandoverQueue<{ h: Handed; m: ChatMessage }>();
  /** Follower: the one timer, armed for the queue's earliest deadline. */
  private timer: unknown;
  /** Leader: our messages this tab gave to its client core (a hand-over of one of them is taken once). */
  private readonly taken = new WeakSet<ChatMessage>();
  private readonly clock: Timers;
  /** Leader: files taken while not connected, sent once it is (in this page's memory, as the core keeps text). */
  private readonly offline: { m: ChatMessage; file: File }[] = [];
  /**
   * Follower: the leader announced no version (it runs the app as it was before hand-overs were confirmed: it
   * reads only the older form and never confirms).
   */
  private olderLeader = false;

  /** The hand-overs of `host`. */
  constructor(private readonly host: HandoversHost) {
    this.clock = host.timers ?? pageTimers;
  }

  /**
   * Our message or file `h`, written in this tab: the leader takes it (stored, then sent); a follower hands it to
   * the leader and keeps it until the leader confirms it.
   */
  send(h: Handed): void {
    if (this.host.role() === "leader") this.take(h);
    else this.hand(h);
  }

  /** Follower: hand `h` to the leader and keep it until confirmed (or say at once that too much waits). */
  private hand(h: Handed): void {
    if (this.olderLeader) return this.handOlder(h);
    const m = this.host.model.handed(h);
    const size = h.kind === "text" ? h.text.length * 3 : h.file.name.length * 3 + 256;
    if (this.kept.keep(h.id, { h, m }, size, this.clock.now())) {
      this.host.post({ t: "send", h });
      this.arm();
    } else {
      const why = "not sent: too much waits for the tab that holds the connection; send it again later";
      m.state = "failed";
      m.detail = why;
      if (m.file) m.file = { ...m.file, phase: "failed", problem: why };
    }
    this.host.model.showHere(m);
  }

  /**
   * Follower: hand `h` once in the form a leader on the older app reads (`to` and `text`, or `to` and `file`),
   * keeping nothing: that leader never confirms, and takes each copy as a new message. It shows the message in
   * every tab itself.
   */
  private handOlder(h: Handed): void {
    this.host.post(
      h.kind === "text" ? { t: "send", to: h.to, text: h.text } : { t: "file", to: h.to, file: h.file },
    );
  }

  /** Follower: what the leader said: our hand-overs first (a confirmation, a new leader), then `mirror` it. */
  fromLeader(d: FromLeader, mirror: (d: FromLeader) => void): void {
    if (d.t === "snap" || d.t === "lead") {
      this.olderLeader = !(typeof d.v === "number" && d.v >= TABS_VERSION);
    }
    if (d.t === "took" || (d.t === "msg" && d.m.dir === "out" && !pending(d.m))) {
      if (this.kept.confirm(d.t === "took" ? d.id : d.m.id)) this.arm();
    } else if (this.olderLeader && this.kept.size) {
      // A leader on the older app: what we kept goes to it once, in its form, and is forgotten.
      for (const { item } of this.kept.takeAll()) this.handOlder(item.h);
      this.arm();
    } else if (d.t === "lead") {
      for (const { item } of this.kept.newLeader(this.clock.now())) this.host.post({ t: "send", h: item.h });
      this.arm();
    }
    mirror(d);
    // What the leader has not taken yet stays on screen here (after a snapshot replaced the lists, say).
    for (const { item } of this.kept.items()) this.host.model.showHere(item.m);
  }

  /**
   * This tab leads now: ours still waiting (from the history, or mirrored from a leader that closed) go to its
   * client core, and what it handed to a leader and was not confirmed is carried out here (once).
   */
  lead(): void {
    for (const m of this.host.model.waiting()) {
      this.taken.add(m);
      this.host.carryOut(m);
    }
    this.clock.clear(this.timer);
    this.timer = undefined;
    for (const { item } of this.kept.takeAll()) this.take(item.h);
  }

  /**
   * Leader: carry out hand-over `h` once per id. New: added (stored, shown in every tab), then, once written to
   * the history on disk, confirmed (`took`: a text) and given to the client core. Taken before (the same
   * hand-over again, or one this tab sends already): a text is confirmed once the history is written, anything
   * beyond "sending" too. A file still sending is not confirmed (the history holds its description, not its
   * bytes, which live in this page until sent): the follower keeps it until the leader's copy is beyond
   * "sending" (`msg`), so a leader that closes before it is sent leaves it to the next one.
   */
  take(h: Handed): void {
    const host = this.host;
    const known = host.model.find(h.to, h.id);
    const took = () => host.post({ t: "took", id: h.id });
    if (known && !pending(known)) return void host.written().then(took);
    if (known && this.taken.has(known)) {
      // Stored again, so that the confirmation follows a write that holds it (an earlier one may have failed).
      if (h.kind === "text") {
        host.model.touch(known);
        void host.written().then((ok) => ok && took());
      }
      return;
    }
    const m = known ?? host.model.handed(h);
    this.taken.add(m);
    m.detail = h.kind === "text" ? "waiting for the connection" : undefined;
    if (known) host.model.touch(m);
    else host.model.add(m);
    void host.written().then((ok) => {
      // Not on disk: sent all the same, but not confirmed (the follower keeps it, and hands it again).
      if (h.kind === "text") {
        if (ok) took();
        host.carryOut(m);
      } else if (host.online()) host.carryOut(m, h.file);
      else this.offline.push({ m, file: h.file });
    });
  }

  /** Leader: connected: the files that waited for it go now. */
  online(): void {
    for (const { m, file } of this.offline.splice(0)) this.host.carryOut(m, file);
  }

  /** Arm the one timer for the next hand-over again (none when nothing waits for a deadline). */
  private arm(): void {
    this.clock.clear(this.timer);
    this.timer = undefined;
    const at = this.kept.next();
    if (at !== undefined) this.timer = this.clock.set(() => this.again(), Math.max(0, at - this.clock.now()));
  }

  private again(): void {
    this.timer = undefined;
    if (this.host.role() !== "follower") return;
    for (const { item } of this.kept.due(this.clock.now())) this.host.post({ t: "send", h: item.h });
    this.arm();
  }
}

/**
 * Our message or file not yet beyond "sending" (seeing it does not settle a hand-over of it). A file counts by its
 * phase alone: one being uploaded (its `fileId` known) is still only in the leader's page.
 */
function pending(m: ChatMessage): boolean {
  return m.file ? m.file.phase === "sending" : m.state === "sending";
}
