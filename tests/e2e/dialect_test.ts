/**
 * A client in another style, written with node:crypto only (none of our crypto or canonical-JSON code):
 * keys as base64url(PEM text), PSS with salt 32, content_sig over the raw ciphertext bytes + ids + ts.
 * It must connect, send to and receive from one of our clients.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import nodeCrypto from "node:crypto";
import { type ClientEvent, SocpClient } from "../../lib/client/client.ts";
import { fixtureKey, fixtureText } from "../helpers/keys.ts";
import { NodeProcess } from "../helpers/node_process.ts";
import { until } from "../helpers/until.ts";
import { RawPeer } from "../helpers/ws_peer.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const PSS = nodeCrypto.constants.RSA_PKCS1_PSS_PADDING;
const OAEP = nodeCrypto.constants.RSA_PKCS1_OAEP_PADDING;

const privPem = fixtureText("user3.pem");
const pubPem = nodeCrypto.createPublicKey(privPem).export({ type: "spki", format: "pem" }) as string;
const myKey = Buffer.from(pubPem).toString("base64url"); // base64url of the PEM text: "LS0tLS1CRUdJTi..."

function sign32(data: Buffer): string {
  return nodeCrypto.sign("sha256", data, { key: privPem, padding: PSS, saltLength: 32 }).toString(
    "base64url",
  );
}
/** Python-style json.dumps(sort_keys=True, separators=(",",":")) for flat ASCII payloads. */
/** JSON with the keys of every object sorted, at every depth (the hello's ACK carries nested limits). */
function sortedJson(o: unknown): string {
  if (Array.isArray(o)) return "[" + o.map(sortedJson).join(",") + "]";
  if (o === null || typeof o !== "object") return JSON.stringify(o);
  const r = o as Record<string, unknown>;
  return "{" + Object.keys(r).sort().map((k) => `${JSON.stringify(k)}:${sortedJson(r[k])}`).join(",") + "}";
}
function verifyAuto(pub: string, data: Buffer, sig: string): boolean {
  const key = nodeCrypto.createPublicKey({ key: Buffer.from(pub, "base64url"), format: "der", type: "spki" });
  return nodeCrypto.verify("sha256", data, {
    key,
    padding: PSS,
    saltLength: nodeCrypto.constants.RSA_PSS_SALTLEN_AUTO,
  }, Buffer.from(sig, "base64url"));
}

Deno.test(
  { name: "a PEM-key, salt-32, raw-preimage client talks with our client both ways", ...opts },
  async () => {
    const node = await NodeProcess.start();
    try {
      const other = crypto.randomUUID();
      const ours = crypto.randomUUID();
      const ourKey = await fixtureKey("user4");
      const p = await RawPeer.open(node.url);
      const helloPayload = { client: "py-style/1", enc_pubkey: myKey, pubkey: myKey };
      p.send({
        type: "USER_HELLO",
        from: other,
        to: "server-id-unknown",
        ts: Date.now(),
        payload: helloPayload,
        sig: sign32(Buffer.from(sortedJson(helloPayload))),
      });
      const ack = await p.waitFor((f) => f.type === "ACK");
      assert.equal(ack.payload.msg_ref, "USER_HELLO");
      // The server's own signature verifies with an independent verifier (salt auto-detected).
      assert.ok(
        verifyAuto(ack.payload.server_pub, Buffer.from(sortedJson(ack.payload)), ack.sig),
        "server sig on ACK",
      );

      const client = await SocpClient.connect(node.url, { userId: ours, key: ourKey, displayName: "ours" });
      const got: ClientEvent[] = [];
      client.onEvent = (e) => got.push(e);
      // The other client learns our key from the relayed advert, and the server kept its PEM key as sent.
      const advert = await p.waitFor((f) => f.type === "USER_ADVERTISE" && f.payload.user_id === ours);
      assert.equal(client.directory.get(other)?.pubkey, myKey, "user keys are relayed exactly as sent");

      // other -> ours: OAEP via node:crypto, content_sig over raw ciphertext bytes + from + to + ts, salt 32.
      const ct = nodeCrypto.publicEncrypt(
        {
          key: nodeCrypto.createPublicKey({
            key: Buffer.from(advert.payload.pubkey, "base64url"),
            format: "der",
            type: "spki",
          }),
          padding: OAEP,
          oaepHash: "sha256",
        },
        Buffer.from("greetings from another implementation"),
      );
      const ts = Date.now();
      const content_sig = sign32(Buffer.concat([ct, Buffer.from(other + ours + ts)]));
      p.send({
        type: "MSG_DIRECT",
        from: other,
        to: ours,
        ts,
        payload: { ciphertext: ct.toString("base64url"), sender_pub: myKey, content_sig },
      });
      const dm = await until(() => got.find((x) => x.kind === "dm"), "our client receives the DM", 10_000);
      assert.ok(dm.kind === "dm");
      assert.equal(dm.text, "greetings from another implementation");
      assert.equal(dm.verified, true, "raw-bytes preimage with salt 32 verifies");

      // ours -> other: the other side decrypts with node:crypto and verifies our content_sig (salt 478, text form).
      await client.tell(other, "and hello back");
      const d = await p.waitFor((f) => f.type === "USER_DELIVER");
      const plain = nodeCrypto.privateDecrypt(
        { key: privPem, padding: OAEP, oaepHash: "sha256" },
        Buffer.from(d.payload.ciphertext, "base64url"),
      );
      assert.equal(plain.toString(), "and hello back");
      assert.equal(d.payload.sender, ours);
      assert.ok(
        verifyAuto(
          d.payload.sender_pub,
          Buffer.from(d.payload.ciphertext + ours + other + d.ts),
          d.payload.content_sig,
        ),
      );
      assert.ok(
        verifyAuto(ack.payload.server_pub, Buffer.from(sortedJson(d.payload)), d.sig),
        "server sig on USER_DELIVER",
      );
      client.close();
      p.close();
    } finally {
      await node.kill();
    }
  },
);
