/// <reference lib="dom" />
/**
 * The connection's status as the web app shows it: a short word in the header, and a banner that says what is
 * going on with a button to act (retry now; use this identity here; try again). While offline the banner counts
 * down to the next attempt with one timer armed for the next second the text changes, and none once it says
 * "now" or the status changed.
 *
 * @module
 */
import { h, replace } from "./dom.ts";
import { type LinkStatus, nextChangeIn, retryText } from "./model.ts";

/** What the banner's buttons do. */
export interface StatusActions {
  /** "Retry now": connect at once instead of at the end of the wait. */
  retryNow(): void;
  /** "Use this identity here" / "Try again": connect again after another device took over or a refusal. */
  reconnect(): void;
}

/** The header's status word and the banner below the header. */
export class StatusView {
  /** The short status in the header. */
  readonly word = h("span", { class: "status", role: "status", "aria-live": "polite", id: "status" });
  /** The banner (hidden while online or connecting). */
  readonly banner = h("div", { class: "banner", id: "link-banner", role: "status", hidden: true });
  private shown = "";
  private timer: ReturnType<typeof setTimeout> | undefined;

  /** A status view whose buttons call `act`. */
  constructor(private readonly act: StatusActions) {}

  /** Show status `st` (the banner is drawn again only when it changed). */
  render(st: LinkStatus): void {
    const kind = st.kind === "online" ? "online" : st.kind === "connecting" ? "connecting" : "offline";
    this.word.className = `status ${kind}`;
    this.word.dataset.state = st.kind;
    this.word.textContent = st.kind === "online"
      ? "Online"
      : st.kind === "connecting"
      ? (st.attempt > 1 ? "Reconnecting…" : "Connecting…")
      : st.kind === "elsewhere"
      ? "Signed in elsewhere"
      : st.kind === "refused"
      ? "Not accepted"
      : "Offline";
    const sig = JSON.stringify(st);
    if (sig === this.shown) return;
    this.shown = sig;
    clearTimeout(this.timer);
    this.timer = undefined;
    const b = this.banner;
    if (st.kind === "online" || st.kind === "connecting") {
      b.hidden = true;
      replace(b);
      return;
    }
    b.hidden = false;
    b.dataset.kind = st.kind;
    if (st.kind === "offline") {
      b.dataset.retryAt = String(st.retryAt);
      const wait = h("span", { id: "retry-wait" });
      replace(b, [
        h("span", {}, `Offline: ${st.reason}.`),
        wait,
        h("button", { type: "button", id: "retry-now", onclick: () => this.act.retryNow() }, "Retry now"),
      ]);
      this.countDown(wait, st.retryAt);
    } else {
      replace(b, [
        h("span", { id: "link-reason" }, st.reason),
        h(
          "button",
          { type: "button", id: "use-here", onclick: () => this.act.reconnect() },
          st.kind === "elsewhere" ? "Use this identity here" : "Try again",
        ),
      ]);
    }
  }

  /** Show the wait until `retryAt` in `el`, and arm the timer for the moment its text changes. */
  private countDown(el: HTMLElement, retryAt: number): void {
    const now = Date.now();
    el.textContent = retryText(retryAt, now);
    const ms = nextChangeIn(retryAt, now);
    this.timer = ms === null ? undefined : setTimeout(() => this.countDown(el, retryAt), ms);
  }
}
