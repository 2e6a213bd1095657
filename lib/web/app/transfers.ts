/**
 * The web session's file transfers: the messages that show files we receive (an offer from FILE_START: nothing is
 * decrypted until the user accepts it; then progress, the checked bytes, or the reason it failed) and files we
 * send (progress, the server's ACK of the whole file, a refusal).
 *
 * @module
 */
import { type ClientEvent, FileStopped, type SocpClient } from "../../client/client.ts";
import { sanitizeFileName } from "../../client/filenames.ts";
import { type ChatMessage, PUBLIC } from "./model.ts";

/** What the transfers need from the session that owns them. */
export interface TransferHost {
  /** The connected client, if any. */
  client(): SocpClient | null;
  /** Largest file the server accepts. */
  maxFileBytes(): number;
  /** A fresh message id starting with `prefix`. */
  newId(prefix: string): string;
  /** Add a message to its conversation. */
  add(m: ChatMessage): void;
  /** Add a note to the conversation on screen. */
  note(text: string): void;
  /** Message `m` changed: store, share and redraw. */
  changed(m: ChatMessage): void;
  /** A transfer moved on: move its bar. */
  progress(m: ChatMessage): void;
  /** A received file is complete: keep its bytes in the history (within its quota). */
  keep(m: ChatMessage, bytes: Uint8Array): void;
  /** Accept this offer without asking (a small file from a verified contact). */
  autoAccept(e: Extract<ClientEvent, { kind: "fileStart" }>): boolean;
}

/** The file events the transfers handle. */
export type FileEvent = Extract<
  ClientEvent,
  { kind: "fileStart" | "fileProgress" | "file" | "fileSendProgress" | "fileRefused" | "ack" }
>;

/** Files being received and sent, as messages of the conversations. */
export class Transfers {
  private readonly receiving = new Map<string, ChatMessage>();
  private readonly sending = new Map<string, ChatMessage>();
  /** Files being sent whose id the client has not named yet. */
  private readonly unbound: ChatMessage[] = [];

  /** Transfers reporting to `host`. */
  constructor(private readonly host: TransferHost) {}

  /** Handle one of the client's file events. */
  onEvent(e: FileEvent): void {
    const host = this.host;
    switch (e.kind) {
      case "ack": {
        // The server relayed a file of ours whole (the ACK names it).
        const f = e.fileId ? this.sending.get(e.fileId) : undefined;
        if (f?.file && f.file.phase === "sending") {
          f.file.phase = "complete";
          f.detail = "relayed whole by the server";
          host.changed(f);
        }
        break;
      }
      case "fileStart": {
        const conv = e.mode === "public" ? PUBLIC : e.from;
        const m: ChatMessage = {
          id: host.newId("f"),
          conv,
          dir: "in",
          from: e.from,
          fromName: e.fromName,
          text: "",
          ts: e.ts ?? Date.now(),
          verified: e.verified,
          file: {
            fileId: e.fileId,
            name: sanitizeFileName(e.name),
            size: e.size,
            done: 0,
            phase: e.offer ? "offered" : "receiving",
          },
        };
        this.receiving.set(`${e.from}|${e.fileId}`, m);
        host.add(m);
        if (e.offer && host.autoAccept(e)) this.accept(m);
        break;
      }
      case "fileProgress":
        for (const [k, m] of this.receiving) {
          if (k.endsWith(`|${e.fileId}`) && m.file) {
            m.file.done = e.received;
            host.progress(m);
          }
        }
        break;
      case "file":
        this.onFile(e);
        break;
      case "fileSendProgress": {
        const m = this.sendingFor(e.fileId, e.name);
        if (m?.file) {
          m.file.done = e.sent;
          host.progress(m);
        }
        break;
      }
      case "fileRefused": {
        const m = this.sendingFor(e.fileId, e.name);
        if (m?.file) {
          this.sending.delete(e.fileId);
          m.file.phase = "failed";
          m.file.problem = e.reason;
          host.changed(m);
        } else host.note(`File ${e.name} stopped: ${e.reason}`);
        break;
      }
    }
  }

  /** The user accepts an offered file: it is decrypted from now on. */
  accept(m: ChatMessage): void {
    const f = m.file;
    const c = this.host.client();
    if (!f || f.phase !== "offered" || !this.receiving.has(`${m.from}|${f.fileId}`)) return;
    if (!c || !c.acceptFile(m.from, f.fileId)) {
      f.phase = "failed";
      f.problem = "the offer is gone (the connection dropped before it was accepted)";
    } else f.phase = "receiving";
    this.host.changed(m);
  }

  /** The user declines an offered file: dropped undecrypted (a DM's sender is told). */
  decline(m: ChatMessage): void {
    const f = m.file;
    if (!f || f.phase !== "offered") return;
    this.receiving.delete(`${m.from}|${f.fileId}`);
    this.host.client()?.declineFile(m.from, f.fileId);
    f.phase = "declined";
    this.host.changed(m);
  }

  /** Our transfer `fileId` (bound to its message at its first event: sendFile names the id only at the end). */
  private sendingFor(fileId: string, name: string): ChatMessage | undefined {
    const m = this.sending.get(fileId);
    if (m) return m;
    const i = this.unbound.findIndex((u) => u.file?.name === name);
    if (i < 0) return undefined;
    const [u] = this.unbound.splice(i, 1);
    u.file!.fileId = fileId;
    this.sending.set(fileId, u);
    return u;
  }

  /** A received file is complete (or failed). */
  private onFile(e: Extract<ClientEvent, { kind: "file" }>): void {
    const k = `${e.from}|${e.fileId}`;
    const m = this.receiving.get(k);
    this.receiving.delete(k);
    if (!m?.file) return;
    m.verified = e.verified;
    if (!e.bytes) {
      m.file.phase = "failed";
      m.file.problem = e.problem ?? "the file did not arrive whole";
    } else {
      m.file.done = e.bytes.length;
      m.file.sha256 = e.sha256;
      m.file.blob = new Blob([e.bytes as Uint8Array<ArrayBuffer>], { type: "application/octet-stream" });
      m.file.phase = "complete";
      const bytes = e.bytes;
      setTimeout(() => this.host.keep(m, bytes), 0); // a task of its own: the page stays responsive
    }
    this.host.changed(m);
  }

  /**
   * Send a file to a user id or the public channel, shown as our message `m` (with its `file`; added already);
   * the size is checked before anything is read or sent.
   */
  async sendFile(to: string, file: File, m: ChatMessage): Promise<void> {
    const fail = (problem: string) => {
      m.file!.phase = "failed";
      m.file!.problem = problem;
      this.host.changed(m);
    };
    if (file.size > this.host.maxFileBytes()) {
      return fail(
        `too large: ${(file.size / 1048576).toFixed(1)} MiB; this server accepts up to ${
          (this.host.maxFileBytes() / 1048576).toFixed(0)
        } MiB. Nothing was sent.`,
      );
    }
    const c = this.host.client();
    if (!c || !c.connected) return fail("not connected: nothing was sent; send it again once online");
    const bytes = new Uint8Array(await file.arrayBuffer());
    this.unbound.push(m);
    try {
      const fileId = await c.sendFile(to, m.file!.name, bytes, (sent, size) => {
        m.file!.done = sent;
        m.file!.size = size;
        this.host.progress(m);
      });
      m.file!.fileId = fileId;
      if (this.unbound.includes(m)) this.unbound.splice(this.unbound.indexOf(m), 1);
      this.sending.set(fileId, m); // a refusal may still come (the receiver checks at FILE_START and at the end)
      if (m.file!.phase === "sending") m.detail = "sent; waiting for the server to confirm";
      this.host.changed(m);
    } catch (e) {
      if (this.unbound.includes(m)) this.unbound.splice(this.unbound.indexOf(m), 1);
      if (e instanceof FileStopped) this.sending.delete(e.fileId);
      if (m.file!.phase !== "failed") fail((e as Error).message);
    }
  }
}
