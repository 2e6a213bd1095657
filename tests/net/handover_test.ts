/**
 * The hand-over of stored rows alone (lib/net/handover.ts): rows are read a page at a time, signed, sent in order
 * and then deleted (or kept for the peer's ACK); a connection that goes away halfway deletes exactly what left and
 * gives the rest back; rows gone from the store are skipped; a failure gives back what was not sent; two
 * connections of one user never both send a row (claims). Each row's state is checked, not only the store.
 */
import assert from "node:assert/strict";
import {
  Claims,
  forwarded,
  Handover,
  handOver,
  type HandoverLink,
  STORED_PAGE,
} from "../../lib/net/handover.ts";
import { Logger } from "../../lib/net/log.ts";
import type { Envelope } from "../../lib/protocol/envelope.ts";

/** A link that sends in chain order; `openFor` frames, then it is closed. */
class FakeLink implements HandoverLink {
  sent: Envelope[] = [];
  #chain: Promise<void> = Promise.resolve();
  constructor(public openFor = Infinity) {}
  chain(step: () => Promise<void>, failed: (e: unknown) => void): void {
    this.#chain = this.#chain.then(step).catch(failed);
  }
  drained(): Promise<void> {
    return Promise.resolve();
  }
  put(text: string): boolean {
    if (this.sent.length >= this.openFor) return false;
    this.sent.push(JSON.parse(text));
    return true;
  }
  done(): Promise<void> {
    return this.#chain;
  }
}

/** Stored rows 1..n, each a frame whose payload says its row. */
function rows(n: number): Map<number, Envelope> {
  const m = new Map<number, Envelope>();
  for (let id = 1; id <= n; id++) {
    m.set(
      id,
      { type: "USER_DELIVER", from: "old", to: "u", ts: id, payload: { row: id }, sig: "" } as Envelope,
    );
  }
  return m;
}

function run(
  opts: {
    n: number;
    link?: FakeLink;
    remove?: boolean | "fails";
    sign?: (p: unknown) => Promise<string>;
    /** The read of this page (0-based) fails (the node is stopping). */
    failPage?: number;
  },
) {
  const store = rows(opts.n);
  const loads: number[][] = [];
  const removed: number[][] = [];
  const results: { sent: number; returned: number }[] = [];
  const link = opts.link ?? new FakeLink();
  const h = new Handover({
    ids: [...store.keys()],
    link,
    conn: 1,
    what: "test",
    log: new Logger("error", () => {}),
    load: (page) => {
      loads.push(page);
      if (loads.length - 1 === opts.failPage) return undefined;
      return page.filter((id) => store.has(id)).map((id) => ({ id, frame: store.get(id) }));
    },
    prepare: (f) => ({ ...f, from: "us" }),
    sign: opts.sign ?? ((p) => Promise.resolve(`sig:${JSON.stringify(p)}`)),
    remove: opts.remove === false ? undefined : (ids) => {
      if (opts.remove === "fails") return false;
      removed.push(ids);
      for (const id of ids) store.delete(id);
      return true;
    },
    onDone: (r) => results.push(r),
  });
  return { h, link, store, loads, removed, results };
}

Deno.test("every row is read a page at a time, signed, sent in order, then deleted", async () => {
  const n = 2 * STORED_PAGE + 3;
  const { h, link, store, loads, removed, results } = run({ n });
  assert.ok(h.states().every(([, s]) => s === "claimed"));
  h.start();
  await link.done();
  assert.deepEqual(
    link.sent.map((f) => (f.payload as { row: number }).row),
    [...Array(n).keys()].map((i) => i + 1),
  );
  assert.ok(link.sent.every((f) => f.from === "us" && f.sig === `sig:${JSON.stringify(f.payload)}`));
  assert.deepEqual(loads.map((p) => p.length), [STORED_PAGE, STORED_PAGE, 3]);
  assert.deepEqual(removed.flat().length, n);
  assert.equal(store.size, 0);
  assert.ok(h.states().every(([, s]) => s === "deleted"));
  assert.deepEqual(results, [{ sent: n, returned: 0 }]);
});

Deno.test("a connection gone halfway: what left is deleted, the rest is given back and stays stored", async () => {
  const { h, link, store, removed, results } = run({ n: 5, link: new FakeLink(2) });
  h.start();
  await link.done();
  assert.deepEqual(removed, [[1, 2]], "exactly the rows that left are deleted");
  assert.deepEqual([...store.keys()], [3, 4, 5]);
  assert.deepEqual(h.states(), [[1, "deleted"], [2, "deleted"], [3, "returned"], [4, "returned"], [
    5,
    "returned",
  ]]);
  assert.deepEqual(results, [{ sent: 2, returned: 3 }]);
});

Deno.test("rows gone from the store are skipped; rows kept for the ACK are not deleted", async () => {
  const a = run({ n: 4 });
  a.store.delete(2);
  a.h.start();
  await a.link.done();
  assert.deepEqual(a.h.states(), [[1, "deleted"], [2, "missing"], [3, "deleted"], [4, "deleted"]]);
  assert.deepEqual(a.results, [{ sent: 3, returned: 0 }]);

  const b = run({ n: 3, remove: false });
  b.h.start();
  await b.link.done();
  assert.equal(b.link.sent.length, 3);
  assert.equal(b.store.size, 3, "the outbox keeps them until the peer ACKs each");
  assert.ok(b.h.states().every(([, s]) => s === "kept"));
});

Deno.test("a signature that fails ends the hand-over: what left is deleted, the rest given back", async () => {
  const { h, link, store, results } = run({
    n: 4,
    sign: (p) =>
      (p as { row: number }).row === 3 ? Promise.reject(new Error("no key")) : Promise.resolve("s"),
  });
  h.start();
  await link.done();
  assert.deepEqual(h.states(), [[1, "deleted"], [2, "deleted"], [3, "returned"], [4, "returned"]]);
  assert.deepEqual([...store.keys()], [3, 4]);
  assert.deepEqual(results, [{ sent: 2, returned: 2 }]);
});

Deno.test("a failed delete leaves the rows sent (not deleted): the node stops and they are sent again later", async () => {
  const { h, link, store } = run({ n: 2, remove: "fails" });
  h.start();
  await link.done();
  assert.equal(link.sent.length, 2);
  assert.equal(store.size, 2);
  assert.ok(h.states().every(([, s]) => s === "sent"));
});

Deno.test("a failed read ends the hand-over: the rows it did not read are given back and stay stored", async () => {
  const { h, link, store, removed, results } = run({ n: STORED_PAGE + 3, failPage: 1 });
  h.start();
  await link.done();
  assert.equal(link.sent.length, STORED_PAGE, "the first page went out");
  assert.deepEqual(removed, [[...Array(STORED_PAGE).keys()].map((i) => i + 1)], "and only it was deleted");
  assert.equal(store.size, 3);
  assert.deepEqual(results, [{ sent: STORED_PAGE, returned: 3 }]);
  assert.deepEqual(h.states().slice(STORED_PAGE).map(([, s]) => s), ["returned", "returned", "returned"]);
});

Deno.test("claims: a second hand-over of a user's rows takes only those no other one holds; gone links give all back", async () => {
  const claims = new Claims();
  const log = new Logger("error", () => {});
  const store = rows(3);
  const base = {
    conn: 1,
    what: "q",
    log,
    claims,
    load: (page: number[]) => page.map((id) => ({ id, frame: store.get(id) })),
    prepare: (f: Envelope) => f,
    sign: () => Promise.resolve("s"),
    remove: () => true,
  };
  let release!: () => void;
  const slow = new FakeLink();
  slow.drained = () => new Promise<void>((r) => release = r);
  const first: { sent: number; returned: number }[] = [];
  handOver({ ...base, ids: [1, 2], link: slow, onDone: (r) => first.push(r) });
  const fast = new FakeLink();
  const second: { sent: number; returned: number }[] = [];
  const h2 = handOver({ ...base, ids: [1, 2, 3], link: fast, onDone: (r) => second.push(r) });
  assert.deepEqual(h2?.states().map(([id]) => id), [3], "rows 1 and 2 are the first hand-over's");
  await fast.done();
  assert.deepEqual(fast.sent.map((f) => (f.payload as { row: number }).row), [3]);
  assert.ok(claims.has(1) && claims.has(2) && !claims.has(3));
  slow.openFor = 0; // the first connection died while it waited for room
  release();
  await slow.done();
  assert.deepEqual(first, [{ sent: 0, returned: 2 }]);
  assert.ok(!claims.has(1) && !claims.has(2), "given back: the next hello may take them");

  const gone: { sent: number; returned: number }[] = [];
  const h3 = handOver({ ...base, ids: [1, 2], link: undefined, onDone: (r) => gone.push(r) });
  assert.deepEqual(h3?.states(), [[1, "returned"], [2, "returned"]]);
  assert.deepEqual(gone, [{ sent: 0, returned: 2 }]);
  assert.ok(!claims.has(1));
});

Deno.test("an outbox frame sent again carries its forwarding time, and no ack for a peer without the extension", () => {
  const f = {
    type: "SERVER_DELIVER",
    from: "a",
    to: "b",
    ts: 1,
    payload: { x: 1, ack: true },
    sig: "",
  } as Envelope;
  assert.deepEqual(forwarded(f, 99, true).payload, { x: 1, ack: true, fwd_ts: 99 });
  assert.deepEqual(forwarded(f, 99, false).payload, { x: 1, fwd_ts: 99 });
  assert.deepEqual(f.payload, { x: 1, ack: true }, "the stored frame is not changed");
});
