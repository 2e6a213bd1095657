/**
 * Benchmark (not a test): send a file across two servers and print where the time goes.
 *
 *   deno run -A tests/bench/file_transfer.ts [MiB]     (also run by `deno task bench`)
 *
 * Two real node processes on loopback, a sender on one, a receiver on the other. Prints wall time, MiB/s, and the
 * RSA operations per MiB on each side: the sender's OAEP encryptions (blocks counted in the chunks it sent), each
 * server's signatures and verifications (from /metrics); the receiver's decryptions and the content signature are
 * derived (labelled so).
 */
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { sha256Hex } from "../../lib/crypto/rsa.ts";
import { decodeBase64Url } from "../../lib/protocol/base64url.ts";
import { fixtureKey } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";

const mib = Number(Deno.args[0] ?? 1);
const size = Math.round(mib * 1024 * 1024);

async function metrics(n: NodeProcess): Promise<Record<string, number>> {
  const text = await (await fetch(`${n.http}/metrics`)).text();
  return Object.fromEntries(
    text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => {
      const [k, v] = l.split(" ");
      return [k, Number(v)];
    }),
  );
}

const a = await NodeProcess.start();
const wk = await (await fetch(`${a.http}/.well-known/socp`)).json();
const b = await NodeProcess.start({
  args: ["--bootstrap", `127.0.0.1:${a.port}#${wk.pubkey}`],
});
try {
  for (let i = 0; i < 200 && (await metrics(b)).socp_servers_linked !== 1; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const sender = await SocpClient.connect(a.url, {
    userId: crypto.randomUUID(),
    key: await fixtureKey("user1"),
    displayName: "sender",
  });
  const receiver = await SocpClient.connect(b.url, {
    userId: crypto.randomUUID(),
    key: await fixtureKey("user2"),
    displayName: "receiver",
  });
  const got: ClientEvent[] = [];
  receiver.onEvent = (e) => got.push(e);
  while (!sender.directory.has(receiver.userId)) await new Promise((r) => setTimeout(r, 20));

  const data = new Uint8Array(size).map((_, i) => (i * 2654435761) >>> 24);
  const [ma0, mb0] = [await metrics(a), await metrics(b)];
  // Count what the sender sends (measured): FILE_CHUNK frames and the OAEP blocks in them, from the frames its
  // client core sends.
  let blocks = 0;
  let chunkFrames = 0;
  const origDrain = sender.core.drain.bind(sender.core);
  sender.core.drain = () => {
    const outs = origDrain();
    for (const o of outs) {
      if (o.kind !== "send" || !o.text.includes('"FILE_CHUNK"')) continue;
      const f = JSON.parse(o.text);
      if (f.type === "FILE_CHUNK") {
        chunkFrames++;
        blocks += decodeBase64Url(f.payload.ciphertext)!.length / 512;
      }
    }
    return outs;
  };
  const t0 = performance.now();
  await sender.sendFile(receiver.userId, "bench.bin", data);
  const tSent = performance.now();
  while (!got.some((e) => e.kind === "file")) await new Promise((r) => setTimeout(r, 20));
  const tDone = performance.now();
  const file = got.find((e) => e.kind === "file");
  if (
    !file || file.kind !== "file" || !file.bytes || (await sha256Hex(file.bytes)) !== (await sha256Hex(data))
  ) {
    throw new Error("file damaged");
  }
  await new Promise((r) => setTimeout(r, 300));
  const [ma1, mb1] = [await metrics(a), await metrics(b)];
  const secs = (tDone - t0) / 1000;
  const per = (n: number) => (n / mib).toFixed(0);
  const d = (m1: Record<string, number>, m0: Record<string, number>, k: string) =>
    (m1[k] ?? 0) - (m0[k] ?? 0);
  console.log(
    `file transfer across two servers: ${mib} MiB in ${secs.toFixed(2)} s = ${(mib / secs).toFixed(3)} MiB/s`,
  );
  console.log(
    `  sender done sending after ${((tSent - t0) / 1000).toFixed(2)} s; receiver done ${
      ((tDone - tSent) / 1000).toFixed(2)
    } s later`,
  );
  console.log(`  frames sent (measured): ${chunkFrames} FILE_CHUNK, between one FILE_START and one FILE_END`);
  console.log(`  RSA operations per MiB (measured unless marked derived):`);
  console.log(
    `    sender   OAEP encrypt      ${per(blocks)} (OAEP blocks counted in the chunks it sent)   ` +
      `PSS sign ${per(1)} (derived: the FILE_START content_sig)`,
  );
  console.log(
    `    server A PSS sign          ${per(d(ma1, ma0, "socp_signatures_total"))}   PSS verify ${
      per(d(ma1, ma0, "socp_verifications_total"))
    }`,
  );
  console.log(
    `    server B PSS sign          ${per(d(mb1, mb0, "socp_signatures_total"))}   PSS verify ${
      per(d(mb1, mb0, "socp_verifications_total"))
    }`,
  );
  console.log(
    `    receiver OAEP decrypt      ${per(blocks)} (derived: one per block received)   PSS verify ${
      per(1)
    } (derived: the FILE_START content_sig)`,
  );
  await sender.close(200);
  await receiver.close(200);
} finally {
  await a.kill();
  await b.kill();
}
