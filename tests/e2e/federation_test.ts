/**
 * Federation end to end: three real node processes on loopback (an introducer and two joiners), users on
 * different nodes, hostile servers, and liveness under SIGSTOP and SIGKILL. Starting the three nodes is the
 * expensive part, so the scenarios are steps of one test that starts and stops them (`await using`); the steps
 * that freeze and kill a node come last.
 */
import assert from "node:assert/strict";
import { canonicalJson } from "../../lib/protocol/canonical_json.ts";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until as waitUntil } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

const until = <T>(f: Parameters<typeof waitUntil<T>>[0], what: string, ms = 10_000) => waitUntil(f, what, ms);
const opts = { sanitizeOps: false, sanitizeResources: false };
// Short enough that the frozen-server step is quick, long enough that a loaded machine does not drop live links.
const TIMERS = ["--heartbeat-interval", "0.5", "--link-timeout", "3"];
const enc = new TextEncoder();

async function health(n: NodeProcess) {
  return await (await fetch(`${n.http}/healthz`)).json();
}

const U1 = "a11ce000-0000-4000-8000-0000000fed01";
const U2 = "b0b00000-0000-4000-8000-0000000fed02";
const U3 = "ca201000-0000-4000-8000-0000000fed03";
const U4 = "da4e0000-0000-4000-8000-0000000fed04";
const [k1, k2, k3, k4] = await Promise.all(["user1", "user2", "user3", "user4"].map(fixtureKey));

function watch(c: SocpClient): ClientEvent[] {
  const got = c.drainBuffered();
  c.onEvent = (e) => got.push(e);
  return got;
}

/** A hostile "server" speaking raw frames, signing with a fixture key. */
async function signedFrame(
  key: Awaited<ReturnType<typeof fixtureKey>>,
  f: { type: string; from: string; to: string; payload: Record<string, unknown> },
) {
  return { ...f, ts: Date.now(), sig: await key.sign(enc.encode(canonicalJson(f.payload))) };
}

Deno.test(
  { name: "three nodes: mesh, users across servers, hostile servers, SIGSTOP and SIGKILL", ...opts },
  async (t) => {
    await using stack = new AsyncDisposableStack();
    const n1 = stack.use(await NodeProcess.start({ args: TIMERS }));
    const wk = await (await fetch(`${n1.http}/.well-known/socp`)).json();
    const BOOT = ["--bootstrap", `127.0.0.1:${n1.port}#${wk.pubkey}`];
    // n2's first bootstrap entry answers nobody: it must move on to the next one.
    const deadKey = (await fixtureKey("user6")).publicKey;
    const n2 = stack.use(
      await NodeProcess.start({ args: ["--bootstrap", `127.0.0.1:1#${deadKey}`, ...BOOT, ...TIMERS] }),
    );
    const n3dir = Deno.makeTempDirSync({ prefix: "socp-e2e-n3-" });
    let n3 = await NodeProcess.start({ dataDir: n3dir, args: [...BOOT, ...TIMERS] });
    stack.defer(() => n3.kill().then(() => {}));
    const nodes = () => [n1, n2, n3];
    const clients: SocpClient[] = [];
    stack.defer(async () => {
      for (const c of clients) await c.close(200);
    });
    const connect = async (n: NodeProcess, userId: string, key: typeof k1, displayName: string) => {
      const c = await SocpClient.connect(n.url, { userId, key, displayName });
      clients.push(c);
      return c;
    };

    await t.step("an introducer and two joiners form a full mesh", async () => {
      for (const n of nodes()) {
        await until(async () => (await health(n)).servers_linked === 2, `mesh at ${n.port}`);
      }
      assert.ok(
        n2.logs.some((l) => /join\.failed host=127\.0\.0\.1 port=1 /.test(l)),
        "the dead entry was tried first",
      );
      assert.ok(n2.logs.some((l) => l.includes("network.joined")));
      assert.ok(n1.logs.some((l) => l.includes("server.joined")));
    });

    const c1 = await connect(n1, U1, k1, "ann");
    const c2 = await connect(n2, U2, k2, "ben");
    let c3 = await connect(n3, U3, k3, "cat");

    await t.step(
      "users on three servers see each other and exchange verified DMs across servers",
      async () => {
        const e1 = watch(c1), e2 = watch(c2), e3 = watch(c3);
        for (const c of [c1, c2, c3]) {
          await until(() => c.list().length === 3, `${c.displayName} sees three users`);
          assert.deepEqual(c.list().map((p) => p.name), ["ann", "ben", "cat"]);
        }
        assert.equal(c1.directory.get(U3)?.serverId, n3.serverId);
        await c2.tell("cat", "ben on n2 to cat on n3");
        await c3.tell("ann", "cat on n3 to ann on n1");
        await c1.tell(U2, "ann on n1 to ben on n2");
        for (
          const [events, text] of [[e3, "ben on n2 to cat on n3"], [e1, "cat on n3 to ann on n1"], [
            e2,
            "ann on n1 to ben on n2",
          ]] as const
        ) {
          const dm = await until(() => events.find((e) => e.kind === "dm"), `DM "${text}"`);
          assert.ok(dm.kind === "dm" && dm.text === text && dm.verified, `${text} arrives verified`);
        }
      },
    );

    await t.step("a server presenting a wrong key for a pinned id is refused", async () => {
      const evil = await fixtureKey("user6");
      const p = await RawPeer.open(n1.url);
      p.send(
        await signedFrame(evil, {
          type: "SERVER_HELLO_LINK",
          from: n2.serverId,
          to: n1.serverId,
          payload: { host: "127.0.0.1", port: 1, pubkey: evil.publicKey },
        }),
      );
      const err = await p.error("BAD_KEY");
      assert.match(err.payload.detail, /pinned to another key/);
      assert.equal((await p.closed).code, 1008);
      assert.equal((await health(n1)).servers_linked, 2);
    });

    await t.step(
      "a joining server is welcomed first thing; a forged USER_ADVERTISE changes nothing",
      async () => {
        const key = await fixtureKey("user5");
        const myId = crypto.randomUUID();
        const p = await RawPeer.open(n1.url);
        const t0 = performance.now();
        p.send(
          await signedFrame(key, {
            type: "SERVER_HELLO_JOIN",
            from: myId,
            to: `127.0.0.1:${n1.port}`,
            payload: { host: "127.0.0.1", port: 1, pubkey: key.publicKey },
          }),
        );
        const welcome = await p.waitFor((f) => f.type === "SERVER_WELCOME", 10_000);
        const ms = performance.now() - t0;
        console.log(`  SERVER_WELCOME after ${ms.toFixed(0)} ms`); // a figure: timing is not asserted in tests
        // The welcome is the first frame the joiner receives.
        assert.equal(p.frames[0]?.type, "SERVER_WELCOME");
        assert.equal(welcome.payload.assigned_id, myId);
        assert.ok(welcome.payload.servers.some((s: { server_id: string }) => s.server_id === n2.serverId));
        assert.ok(welcome.payload.clients.some((c: { user_id: string }) => c.user_id === U1));
        // Forged: claims to come from n2 (signed with our key, not n2's), and one of ours with a broken signature.
        const victim = "d0000000-0000-4000-8000-00000000f0f0";
        const payload = {
          user_id: victim,
          server_id: n2.serverId,
          meta: { display_name: "mallory" },
          pubkey: key.publicKey,
        };
        p.send(await signedFrame(key, { type: "USER_ADVERTISE", from: n2.serverId, to: "*", payload }));
        await p.error("INVALID_SIG");
        const own = await signedFrame(key, {
          type: "USER_ADVERTISE",
          from: myId,
          to: "*",
          payload: { ...payload, server_id: myId },
        });
        p.send({ ...own, sig: own.sig.slice(0, -4) + (own.sig.endsWith("AAAA") ? "BBBB" : "AAAA") });
        await p.error("INVALID_SIG");
        // Then a new user on n1: n1 reduced the forged frames before it answered them, and its connection to c1
        // and its link to n2 keep order, so once both clients list the new user, an advert caused by the forged
        // frames would be listed too.
        const dan = await connect(n1, U4, k4, "dan");
        await until(() => c1.directory.has(U4) && c2.directory.has(U4), "the new user's advert arrives");
        assert.ok(!c1.directory.has(victim) && !c2.directory.has(victim));
        p.close();
        await dan.close();
      },
    );

    await t.step(
      "a frozen server (SIGSTOP) loses its users everywhere within the timeout; they return when it resumes",
      async () => {
        const e1 = watch(c1);
        const logsBefore = [n1.logs.length, n2.logs.length];
        const downLine = (i: number) =>
          [n1, n2][i].logs.slice(logsBefore[i]).find((l) =>
            l.includes("link.down") && l.includes(`server=${n3.serverId}`)
          );
        const t0 = Date.now();
        n3.child.kill("SIGSTOP");
        try {
          await until(() => !c1.directory.has(U3) && !c2.directory.has(U3), "cat withdrawn", 30_000);
          // Still frozen: both other nodes log that they dropped the link (the log may trail the event a little).
          await until(() => [n1, n2].every((_, i) => downLine(i)), "link.down logged by both nodes", 30_000);
        } finally {
          n3.child.kill("SIGCONT");
        }
        const took = Date.now() - t0;
        // Timing is a figure, not an assertion (2 shared cores): printed. What must hold is the outcome and its
        // order: the users of the frozen server were withdrawn while it was frozen (before SIGCONT): both other
        // nodes logged link.down for it after the SIGSTOP, and the client was told they left.
        console.log(
          `  frozen server's users withdrawn after ${took} ms (link timeout 3000 ms, heartbeat 500 ms)`,
        );
        for (const [i, n] of [n1, n2].entries()) {
          const down = downLine(i);
          // Dropped by the link timeout (reason=timeout) or by the WebSocket ping timeout of the same length, which
          // closes the socket first on the accepting side (reason=closed); either way while the peer was frozen.
          assert.match(
            down ?? "",
            /reason=(timeout|closed)/,
            `node ${n.port} dropped the silent link while it was frozen`,
          );
        }
        assert.ok(e1.some((e) => e.kind === "left" && e.peer.userId === U3));
        await until(() => c1.directory.has(U3) && c2.directory.has(U3), "cat back after SIGCONT", 15_000);
        for (const n of nodes()) {
          let last: unknown;
          await until(async () => (last = await health(n)).servers_linked === 2, `mesh again at ${n.port}`)
            .catch((e) => {
              throw new Error(`${e.message}: ${JSON.stringify(last)}\n${n.logs.slice(-30).join("\n")}`);
            });
        }
      },
    );

    await t.step(
      "a killed server rejoins with the same id after restart, and its users reappear",
      async () => {
        const id = n3.serverId;
        await n3.kill("SIGKILL");
        await until(() => !c1.directory.has(U3), "cat gone after SIGKILL");
        await c3.close(100);
        n3 = await NodeProcess.start({ dataDir: n3dir, args: [...BOOT, ...TIMERS] });
        assert.equal(n3.serverId, id, "same server id");
        for (const n of nodes()) {
          await until(
            async () => (await health(n)).servers_linked === 2,
            `mesh after restart at ${n.port}`,
          );
        }
        c3 = await connect(n3, U3, k3, "cat");
        await until(() => c1.directory.get(U3)?.serverId === id && c2.directory.has(U3), "cat back on n3");
        const e3 = watch(c3);
        await c1.tell("cat", "welcome back");
        const dm = await until(() => e3.find((e) => e.kind === "dm"), "DM after restart");
        assert.ok(dm.kind === "dm" && dm.verified && dm.text === "welcome back");
      },
    );
  },
);
