/// <reference lib="dom" />
/**
 * The browser's session over the shared client core: it composes the parts below and routes what the user
 * does to the tab that holds the connection. No DOM drawing here: main.ts renders the model and calls the
 * actions. The parts, one concern each:
 *
 * - **tabs.ts**: one connection per identity and browser. One tab, the *leader* (it holds a Web Lock), owns the
 *   client and the history; the others (*followers*) mirror it and hand it what their user does (kept until the
 *   leader confirms it: handovers.ts). When the leader tab closes, a follower connects in its place. So the
 *   server sees one session, and every tab shows the same state.
 * - **link.ts**: the leader's connection and the status shown for it (another device that took over is said in
 *   words; the session then connects again only when the user asks).
 * - **conversations.ts**: the conversations, their messages in send order and unread counts.
 * - **history_binding.ts**: every message and the state (unread counts, the replay dedupe) in the encrypted
 *   history, and received files within its quota; a reload shows everything again.
 * - **outbox.ts**: our text messages on their way (also those typed before the connection, or still waiting
 *   after a reload).
 * - **client_events.ts**: where the client core's events go.
 * - **people.ts**: people, labels and keys (the trust rules of PROFILE §16), and the notes when a key changes.
 * - **transfers.ts**: files received and sent.
 *
 * Message states, as the user sees them (the core's): `sending` (not on the wire yet), `sent` (written to a live
 * connection for a recipient online now; SOCP acknowledges no live delivery), `accepted` (the server acknowledged
 * it: queued for an offline recipient or handed to their home server), `failed` (refused, with the reason).
 * Received messages say whether their signature verified with the key presence announced for the sender.
 *
 * @module
 */
import type { Contact, CryptoRunner, SocpClient } from "../../client/client.ts";
import { routeEvent } from "./client_events.ts";
import { Conversations } from "./conversations.ts";
import type { Db } from "./db.ts";
import type { History } from "./history.ts";
import { HistoryBinding } from "./history_binding.ts";
import type { Identity } from "./identity.ts";
import { Link } from "./link.ts";
import {
  type ChatMessage,
  type Conversation,
  fingerprintOf,
  type LinkStatus,
  type PeopleSnapshot,
  PUBLIC,
} from "./model.ts";
import { Outbox } from "./outbox.ts";
import { People } from "./people.ts";
import { Handovers } from "./handovers.ts";
import { applyFromLeader, applyToLeader, type FromLeader, type Handed, Tabs, type ToLeader } from "./tabs.ts";
import { TABS_VERSION } from "./tab_messages.ts";
import { Transfers } from "./transfers.ts";
import { IdbTrustStore } from "./trust_store.ts";

/** Files up to this size from a verified contact are accepted without asking. */
export const AUTO_ACCEPT_BYTES = 1024 * 1024;

/** The session behind the app (one per tab). */
export class Session {
  status: LinkStatus = { kind: "connecting", attempt: 1 };
  /** Contacts from IndexedDB (used until the first connection; then the core keeps them). */
  readonly stored = new Map<string, Contact>();
  /** The conversation on screen in this tab. */
  current = PUBLIC;
  /** This tab holds the connection (else it mirrors the tab that does); "electing" until the lock says which. */
  role: "leader" | "follower" | "electing" = "electing";
  /** Called after every change (the view batches redraws). */
  onChange: () => void = () => {};
  /** Called on every progress step of a file transfer (the view moves that bar at once). */
  onProgress: (m: ChatMessage) => void = () => {};
  /** Called when a message arrives (the view notifies while hidden). */
  onIncoming: (m: ChatMessage) => void = () => {};
  /** Called when this identity was signed out (here or in another tab). */
  onSignedOut: () => void = () => {};
  /** Largest file the server accepts (from /api/network). */
  maxFileBytes = 16 * 1024 * 1024;
  myFingerprint = "";
  /** Whether the user looks at this tab (the view keeps it current). */
  visible = true;
  /** Follower: what the leader said about people and keys (null before its snapshot). */
  mirror: PeopleSnapshot | null = null;
  /** People, labels and keys as shown. */
  readonly people: People;

  private readonly tabs: Tabs;
  private readonly link: Link;
  private readonly model: Conversations;
  private readonly saved: HistoryBinding;
  private readonly outbox: Outbox;
  private readonly files: Transfers;
  /** What the user did before the election said who carries it out (run once it did). */
  private readonly beforeElection: (() => void)[] = [];
  private readonly handovers: Handovers;

  /**
   * The session of identity `me` (its contacts in `db`, its history in `history`) with the server at `wsUrl`;
   * `crypto` runs the client core's crypto (the app's decrypts in Web Workers).
   */
  constructor(
    readonly me: Identity,
    private readonly db: Db,
    history: History,
    wsUrl: string,
    crypto: CryptoRunner,
  ) {
    const leading = () => this.role === "leader";
    const client = () => this.client;
    const note = (conv: string | null, text: string, kind?: string) =>
      this.model.note(conv ?? this.current, text, kind);
    const touch = (m: ChatMessage) => this.model.touch(m);
    this.tabs = new Tabs(me.userId, (d) => this.onTabMessage(d));
    this.model = new Conversations({
      me,
      saved: () => this.saved,
      post: (msg) => this.tabs.post(msg),
      showing: (conv) => (this.seeSelf(), this.tabs.showing(conv)),
      incoming: (m) => this.onIncoming(m),
      progress: (m) => this.onProgress(m),
      changed: () => this.changed(),
    });
    const conv = (id: string) => this.model.conv(id);
    this.saved = new HistoryBinding(history, { leading, conversations: this.model.all, conv, touch, note });
    this.people = new People({
      me,
      stored: this.stored,
      client,
      leading,
      mirror: () => this.mirror,
      saveContact: (c) => this.db.saveContact(c).catch(() => note(null, "Could not save a contact.")),
      note,
      post: (p) => this.tabs.post({ t: "people", ...p }),
      changed: () => this.changed(),
    });
    const trustStore = new IdbTrustStore(db, history);
    this.link = new Link({
      me,
      wsUrl,
      status: () => this.status,
      setStatus: (s) => this.setStatus(s),
      options: () => ({ store: trustStore, maxFileBytes: this.maxFileBytes, crypto }),
      attach: (c) => this.attach(c),
    });
    const mine = (prefix: string, to: string, text: string) => this.model.mine(prefix, to, text);
    const add = (m: ChatMessage) => this.model.add(m);
    this.outbox = new Outbox({ client: () => this.link.get(), conv, mine, add, touch });
    this.files = new Transfers({
      client,
      maxFileBytes: () => this.maxFileBytes,
      newId: (prefix) => this.model.newId(prefix),
      add,
      note: (text) => note(null, text),
      changed: touch,
      progress: (m) => this.model.progressed(m),
      keep: (m, bytes) => this.saved.keepFile(m, bytes),
      // A small file from a contact marked verified (the safety codes matched) needs no click.
      autoAccept: (e) =>
        e.size <= AUTO_ACCEPT_BYTES && !!e.verified && this.people.trustOf(e.from)?.verified === true,
    });
    this.handovers = new Handovers({
      role: () => this.role,
      post: (msg) => this.tabs.post(msg),
      model: this.model,
      written: () => this.saved.written(),
      carryOut: (m, file) => file ? void this.files.sendFile(m.conv, file, m) : this.outbox.resend([m]),
      online: () => this.status.kind === "online",
    });
    addEventListener("pagehide", (e) => {
      this.tabs.post({ t: "bye", tab: this.tabs.id });
      this.saved.flush();
      // Say goodbye now, so the server ends this session at once and another tab can take over.
      if (!(e as PageTransitionEvent).persisted) this.client?.close(500);
    });
  }

  /** The connected client (the leader's), if any. */
  get client(): SocpClient | null {
    return this.link.client;
  }

  /** The conversations by id. */
  get conversations(): Map<string, Conversation> {
    return this.model.all;
  }

  /** The conversation with `id`, created empty if new. */
  conv(id: string): Conversation {
    return this.model.conv(id);
  }

  /** Load contacts and the history, then lead (connect) or follow the tab that does (returns at once). */
  async start(): Promise<void> {
    this.myFingerprint = await fingerprintOf(this.me.key.spki);
    for (const c of await this.db.contacts()) this.stored.set(c.userId, c);
    await this.saved.load();
    this.changed();
    this.tabs.elect((handover) => this.lead(handover), () => this.follow(), () => this.link.isStopped);
  }

  changed(): void {
    this.onChange();
  }

  // ---------------------------------------------------------------- tabs

  private follow(): void {
    this.role = "follower";
    this.status = { kind: "connecting", attempt: 1 };
    this.changed();
    this.tabs.askLeader(() => this.mirror !== null || this.role !== "follower" || this.link.isStopped);
    this.sayTab();
    for (const f of this.beforeElection.splice(0)) f();
  }

  private lead(handover: boolean): void {
    this.role = "leader";
    this.tabs.post({ t: "lead", tab: this.tabs.id, v: TABS_VERSION });
    this.seeSelf();
    this.changed();
    this.link.start(handover);
    this.handovers.lead(); // ours still waiting, and what this tab handed to a leader that closed
    for (const f of this.beforeElection.splice(0)) f();
  }

  /** Run `f` now, or once the election said which this tab is (what the user did meanwhile is not lost). */
  private elected(f: () => void): void {
    if (this.role === "electing") this.beforeElection.push(f);
    else f();
  }

  /** Run `here` in the leader tab; a follower hands `msg` to the leader instead. */
  private route(msg: ToLeader, here: () => void): void {
    this.elected(() => this.role === "leader" ? here() : this.tabs.post(msg));
  }

  /** Tell the leader what this tab shows. */
  sayTab(): void {
    if (this.role === "electing") return;
    if (this.role === "follower") {
      return this.tabs.post({ t: "tab", tab: this.tabs.id, visible: this.visible, current: this.current });
    }
    this.seeSelf();
    if (this.visible) this.read(this.current);
  }

  /** The leader's own tab shows what it shows. */
  private seeSelf(): void {
    this.tabs.see(this.tabs.id, { visible: this.visible, current: this.current });
  }

  private onTabMessage(d: FromLeader | ToLeader): void {
    if (!d || typeof d !== "object") return;
    if (d.t === "signedout") {
      this.stopLocal();
      this.onSignedOut();
    } else if (d.t === "signout") {
      if (this.role === "leader") this.stopLocal();
    } else if (this.role === "leader") applyToLeader(this, this.tabs, d as ToLeader);
    else if (this.role === "follower") {
      this.handovers.fromLeader(d as FromLeader, applyFromLeader.bind(null, this));
    }
  }

  /** Leader: take a follower's hand-over (once per id; a text is `took` once it is in the history on disk). */
  readonly take = (h: Handed): void => this.handovers.take(h);

  /** The leader's state, for a tab that starts following it. */
  snapshot(): FromLeader {
    const convs = [...this.model.all.values()];
    return { t: "snap", convs, status: this.status, v: TABS_VERSION, ...this.people.snapshot() };
  }

  /** True when the user looks at some tab of ours (the leader knows; a follower says its own). */
  anyTabVisible(): boolean {
    if (this.role !== "leader") return this.visible;
    this.seeSelf();
    return this.tabs.anyVisible();
  }

  private setStatus(s: LinkStatus): void {
    this.status = s;
    if (this.role === "leader") this.tabs.post({ t: "status", status: s });
    if (s.kind === "online") this.handovers.online();
    this.changed();
  }

  // ---------------------------------------------------------------- connection and events (leader)

  /** The client was made (offline): its events come here. */
  private attach(c: SocpClient): void {
    const { link, people, outbox, model, files } = this;
    const parts = { link, people, outbox, model, files, current: () => this.current };
    c.onEvent = (e) => routeEvent(parts, e);
    for (const e of c.drainBuffered()) routeEvent(parts, e);
    this.people.changedSoon();
  }

  /** Stop this tab's connection and give up the lock (sign-out). */
  private stopLocal(): void {
    this.link.stop();
    this.tabs.resign();
  }

  // ---------------------------------------------------------------- actions (run by the leader)

  /** Show a conversation in this tab (clears its unread count). */
  open(id: string): void {
    this.current = id;
    this.model.conv(id);
    this.sayTab();
    this.read(id);
    this.changed();
  }

  /** Conversation `id` was read. */
  read(id: string): void {
    if (this.role === "follower") {
      const c = this.model.conv(id);
      if (c.unread) this.tabs.post({ t: "read", conv: id });
      c.unread = 0;
    } else this.route({ t: "read", conv: id }, () => this.model.read(id));
  }

  /** Send a text message to a user id or to the public channel. */
  send(to: string, text: string): void {
    const h: Handed = { kind: "text", id: this.model.newId("e"), ts: Date.now(), to, text };
    this.elected(() => this.handovers.send(h));
  }

  /** Send a file to a user id or the public channel; the size is checked before anything is read or sent. */
  sendFile(to: string, file: File): void {
    const h: Handed = { kind: "file", id: this.model.newId("o"), ts: Date.now(), to, file };
    this.elected(() => this.handovers.send(h));
  }

  /** Accept an offered file: it is decrypted now. */
  accept(m: ChatMessage): void {
    this.route({ t: "accept", id: m.id, conv: m.conv }, () => this.files.accept(m));
  }

  /** Decline an offered file: dropped undecrypted. */
  decline(m: ChatMessage): void {
    this.route({ t: "decline", id: m.id, conv: m.conv }, () => this.files.decline(m));
  }

  /** A kept file's bytes (decrypted from the history), when the page has none in memory. */
  fileBlob(m: ChatMessage): Promise<Blob | null> {
    return this.saved.fileBlob(m);
  }

  /** Offline: try now instead of at the end of the wait (the button "Retry now"). */
  retryNow(): void {
    this.route({ t: "retry" }, () => this.link.retryNow());
  }

  /** After "signed in elsewhere" or a refusal: connect again (only when the user asks). */
  reconnect(): void {
    this.route({ t: "reconnect" }, () => this.link.reconnect());
  }

  /** Accept a contact's changed key (after comparing the new safety code). */
  trustKey(userId: string): void {
    this.route({ t: "trustKey", id: userId }, () => {
      this.people.act(userId, "accept the key", (c) => c.trustKey(userId));
    });
  }

  /** Mark a contact verified (the safety codes matched), or remove the mark. */
  setVerified(userId: string, verified: boolean): void {
    this.route({ t: "setVerified", id: userId, verified }, () => {
      this.people.act(userId, "change the mark", (c) => c.setVerified(userId, verified));
    });
  }

  /** Accept the key our server presents now. */
  trustServerKey(): void {
    this.route({ t: "trustServerKey" }, () => {
      this.people.act(PUBLIC, "accept the server's key", (c) => c.trustServerKey());
    });
  }

  /** Delete a conversation's messages and kept files (in every tab). */
  deleteConversation(id: string): void {
    this.route({ t: "dropConv", conv: id }, () => this.model.delete(id));
  }

  /** Delete every conversation and kept file (in every tab; the identity stays). */
  async wipeHistory(): Promise<void> {
    let done = Promise.resolve();
    this.route({ t: "wipe" }, () => done = this.model.wipe());
    await done;
  }

  /** Sign out: close the connection (in whichever tab holds it), delete the identity, history and key. */
  async signOut(): Promise<void> {
    this.tabs.post({ t: "signout" });
    this.stopLocal();
    this.saved.stop();
    await this.db.clear();
    this.tabs.post({ t: "signedout" });
  }
}
