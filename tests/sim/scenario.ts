/**
 * The federation scenarios the simulation tests run (one per seed): start the nodes, add users, chaos (users
 * coming and going, DMs, bursts to stalled readers, broken links, duplicated and reordered frames, crashed nodes,
 * failing store writes), then heal; and the calm-phase checks.
 */
import { fixtureKey } from "../helpers/keys.ts";
import { type Faults, NO_FAULTS, Sim } from "./sim.ts";

const KEYS = await Promise.all(
  ["user1", "user2", "user3", "user4", "user5", "user6"].map(async (k) => (await fixtureKey(k)).publicKey),
);

export interface Scenario {
  nodes: number;
  users: number;
  chaosMs: number;
  faults: Faults;
  crashes: boolean;
  /** Add a foreign server (joining node 0 after 2.5 s) with this many users homed on it. */
  foreignUsers?: number;
  /** Users driven by the real client core (client_user.ts), each homed on a node drawn at start. */
  clients?: number;
}

export async function runScenario(seed: number, sc: Scenario, prepare?: (sim: Sim) => void): Promise<Sim> {
  const sim = new Sim(seed, KEYS);
  prepare?.(sim);
  // A node that stops on a failed write or read may send a frame again after its restart (at least once on a
  // crash): clients dedupe what arrives unchanged; the client-core users' "shown once" stays strict.
  sim.dedupeAtClient = (sc.faults.storeFail ?? 0) > 0 || (sc.faults.readFail ?? 0) > 0;
  const { rng } = sim;
  sim.addNode(0, []);
  for (let i = 1; i < sc.nodes; i++) sim.addNode(i % KEYS.length, [0]);
  sim.start(sim.nodes[0]);
  for (const n of sim.nodes.slice(1)) sim.at(sim.now + 10 + rng.int(2000), () => sim.start(n));
  if (sc.foreignUsers !== undefined) {
    const f = sim.addForeign(5);
    sim.at(sim.now + 2500, () => sim.dialFromForeign(f, sim.nodes[0].host));
  }
  await sim.run(5000);
  for (let i = 0; i < sc.users; i++) sim.addUser(i % KEYS.length);
  for (const u of sim.users.slice(0, sc.foreignUsers ?? 0)) u.home = sim.foreign[0];
  for (const u of sim.users) sim.connect(u, rng.pick(sim.nodes.filter((n) => n.state)));
  for (let i = 0; i < (sc.clients ?? 0); i++) {
    sim.connectClient(sim.addClient(i % KEYS.length, rng.pick(sim.nodes)));
  }
  await sim.run(1000);

  // Chaos.
  sim.faults = sc.faults;
  const end = sim.now + sc.chaosMs;
  while (sim.now < end) {
    await sim.run(100);
    const u = rng.pick(sim.users);
    if (rng.chance(0.02)) sim.disconnect(u);
    else if (rng.chance(0.03) && !u.pipe) {
      const up = sim.nodes.filter((n) => n.state);
      if (up.length) sim.connect(u, rng.pick(up));
    }
    if (rng.chance(0.4)) {
      const to = rng.pick(sim.users);
      if (to !== u) sim.dm(u, to); // to online and offline users alike
    }
    if (rng.chance(0.05)) sim.all(u);
    if (sc.faults.stall && rng.chance(sc.faults.stall)) {
      // A user stops reading while another sends it a burst of 2 KB DMs: more than its node may hold for it
      // (maxUnsentBytes 48 KiB in the simulation), so the node drains, then cuts it as too slow; the cut
      // connection lingers until the user reads again.
      const to = rng.pick(sim.users);
      if (to !== u && to.online) {
        sim.stall(to, 500 + rng.int(4000));
        for (let i = 0; i < 30; i++) sim.dm(u, to, 2000);
      }
    }
    // Invariant at every step: a node lists only users it could deliver to (local, or at a linked server).
    for (const n of sim.nodes) {
      if (!n.state) continue;
      for (const pr of n.state.presence.values()) {
        if (pr.serverId !== n.state.config.serverId && !n.state.links.has(pr.serverId)) {
          sim.violations.push(
            `node ${n.index} lists ${pr.userId.slice(-3)} at unlinked server ${pr.serverId.slice(-3)}`,
          );
        }
      }
    }
    if (sim.clients.length) {
      // Client users come and go and send DMs; what was not accepted is sent again by their core on reconnect.
      const c = rng.pick(sim.clients);
      if (rng.chance(0.02) && c.pipe) sim.closePipe(c.pipe);
      else if (rng.chance(0.05) && !c.pipe) sim.connectClient(c);
      if (rng.chance(0.3)) {
        const to = rng.pick(sim.clients);
        if (to !== c) sim.clientDm(c, to);
      }
      if (sc.faults.stall && rng.chance(sc.faults.stall)) {
        sim.stallClient(rng.pick(sim.clients), 500 + rng.int(4000));
      }
    }
    if (sc.crashes && rng.chance(0.004)) sim.crash(rng.pick(sim.nodes));
    if (rng.chance(0.01)) {
      const down = sim.nodes.filter((n) => !n.state);
      if (down.length) sim.start(rng.pick(down));
    }
  }

  // Heal: no more faults, every node up, wait out the longest backoff, every user back online.
  sim.faults = NO_FAULTS;
  for (const n of sim.nodes) if (!n.state) sim.start(n);
  await sim.run(130_000);
  for (let round = 0; round < 3; round++) {
    for (const c of sim.clients) {
      if (c.online) continue;
      if (c.pipe) sim.closePipe(c.pipe);
      await sim.run(10);
      sim.connectClient(c);
    }
    for (const u of sim.users) {
      if (u.online) continue;
      if (u.pipe) sim.disconnect(u);
      await sim.run(10);
      sim.connect(u, rng.pick(sim.nodes));
    }
    await sim.run(3000);
  }
  return sim;
}

/** Run the calm-phase checks; returns every problem found. */
export async function check(sim: Sim): Promise<string[]> {
  const problems = [...sim.violations];
  problems.push(...sim.meshGaps());
  problems.push(...sim.presenceDiffs());
  problems.push(...sim.queueDrift());
  if (sim.users.some((u) => !u.online)) {
    problems.push(`users offline after healing: ${sim.users.filter((u) => !u.online).length}`);
  }
  if (sim.clients.some((c) => !c.online)) {
    problems.push(`client users offline after healing: ${sim.clients.filter((c) => !c.online).length}`);
  }
  const calmClient: string[] = [];
  for (const a of sim.clients) {
    for (const b of sim.clients) if (a !== b) calmClient.push(sim.clientDm(a, b) ?? "");
  }
  // Every DM sent while calm arrives exactly once.
  const calm = [];
  for (const a of sim.users) {
    for (const b of sim.users) if (a !== b && a.online && b.online) calm.push(sim.dm(a, b)!);
  }
  const calmPublic = sim.users.filter((u) => u.online).map((u) => sim.all(u)!);
  await sim.run(3000);
  for (const dm of calm) {
    const got = sim.users.find((u) => u.userId === dm.to)!.received.get(dm.id) ?? 0;
    if (got !== 1) problems.push(`calm DM ${dm.id} arrived ${got} times`);
  }
  // Every public message sent while calm reaches every other user exactly once.
  for (const id of calmPublic) {
    const rec = sim.publics.get(id)!;
    for (const u of sim.users) {
      if (u.userId !== rec.from && rec.got.get(u.userId) !== 1) {
        problems.push(`calm public ${id} reached ${u.userId.slice(-3)} ${rec.got.get(u.userId) ?? 0} times`);
      }
    }
  }
  // Every DM the network accepted (ACKed to its sender: queued somewhere) arrived exactly once, restarts or not,
  // unless its final USER_DELIVER was on the wire when the recipient's connection closed: no server can know
  // that a frame handed to a closing socket was lost (clients do not acknowledge deliveries in SOCP).
  for (const id of sim.acked) {
    const dm = sim.dms.get(id)!;
    const got = sim.users.find((u) => u.userId === dm.to)!.received.get(id) ?? 0;
    // Or it was handed to a foreign server's live link (which does not ACK, PROFILE §15) and lost on the wire.
    // Or its last hop was in the memory of a node that crashed before the frame left (see Sim.lostInCrash).
    const excused = sim.lostAtLastHop.has(id) || sim.lostHandedToForeign.has(id) || sim.lostInCrash.has(id);
    if ((got > 1 && !sim.dedupeAtClient) || (got === 0 && !excused)) {
      problems.push(`accepted DM ${id} arrived ${got} times`);
    }
  }
  // Client users: every DM whose sender's core saw it accepted, and every DM sent while calm, was shown to its
  // recipient exactly once (the core sends again what was not accepted, and shows a copy once); none was shown
  // twice. A DM lost at the last hop (no client acknowledges a delivery) may be missing.
  if (calmClient.includes("")) problems.push("a client core refused to send a calm DM");
  for (const [id, dm] of sim.clientDms) {
    const shown = dm.to.shown.get(id) ?? 0;
    const state = dm.from.core.message(dm.messageId)?.state;
    const excused = sim.lostAtLastHop.has(id) || sim.lostInCrash.has(id);
    if (shown > 1) problems.push(`client DM ${id} shown ${shown} times`);
    else if (shown === 0 && (calmClient.includes(id) || (state === "accepted" && !excused))) {
      problems.push(`client DM ${id} (${state}) never shown`);
    }
  }
  // Quiet: nothing but heartbeats.
  sim.serverFrames.clear();
  await sim.run(20_000);
  const chatter = [...sim.serverFrames].filter(([t]) => t !== "HEARTBEAT");
  if (chatter.length) problems.push(`gossip while quiet: ${JSON.stringify(chatter)}`);
  return [...new Set(problems)];
}

export const CALM: Scenario = { nodes: 4, users: 8, chaosMs: 30_000, faults: NO_FAULTS, crashes: false };
export const STORM: Scenario = {
  nodes: 4,
  users: 10,
  chaosMs: 60_000,
  faults: { breakLink: 0.01, duplicate: 0.05, reorder: 0.05, stall: 0.006 },
  crashes: true,
};
/**
 * The storm, store writes that fail now and then (each stops its node, restarted from its database), and users
 * driven by the real client core besides the scripted ones.
 */
export const STORE_STORM: Scenario = { ...STORM, faults: { ...STORM.faults, storeFail: 0.002 }, clients: 4 };
