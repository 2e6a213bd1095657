/**
 * Who speaks what (PROFILE §15): read `software` from a server's `/.well-known/socp`, bounded in time (3 s) and
 * size (64 KiB). Anything unexpected answers "" (it says nothing, so it gets no extension).
 *
 * @example
 * ```ts ignore
 * const software = await readSoftware("http://127.0.0.1:8765/.well-known/socp");
 * ```
 * @module
 */

/**
 * GET a /.well-known/socp document; its `software`, or "" (rejects only when nothing answered). `client` carries
 * extra trusted CAs (`--ca-cert`) for https.
 */
export async function readSoftware(url: string, client?: Deno.HttpClient): Promise<string> {
  const res = await fetch(url, {
    signal: AbortSignal.timeout(3000),
    redirect: "manual",
    ...(client ? { client } : {}),
  });
  if (!res.ok || !res.body) {
    await res.body?.cancel();
    return "";
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size <= 65_536) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  await reader.cancel();
  if (size > 65_536) return "";
  const buf = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) (buf.set(c, at), at += c.length);
  try {
    const doc = JSON.parse(new TextDecoder().decode(buf));
    const sw = doc && typeof doc === "object" ? (doc as Record<string, unknown>).software : undefined;
    return typeof sw === "string" ? sw.slice(0, 256) : "";
  } catch {
    return "";
  }
}

import type { Event } from "../core/types.ts";

/** The reducer's event for a probe's answer. */
export function softwareEvent(serverId: string, r: { software: string; tls: boolean }, now: number): Event {
  return { kind: "software", now, serverId, software: r.software, ...(r.tls ? { tls: true } : {}) };
}

/**
 * Probe a server that may serve TLS: its `software` read with `read` at `url`; when plain http cannot connect, at
 * https (a server that joined us says nothing of TLS; then `tls` is true and the reducer redials it with wss://).
 * Never rejects: anything that fails answers `{ software: "" }`.
 */
export function probeSoftware(
  read: (url: string) => Promise<string>,
  url: string,
): Promise<{ software: string; tls: boolean }> {
  return read(url).then(
    (software) => ({ software, tls: false }),
    () =>
      url.startsWith("http://")
        ? read(url.replace(/^http:/, "https:")).then((software) => ({ software, tls: true }))
        : Promise.reject(new Error("no answer")),
  ).catch(() => ({ software: "", tls: false }));
}
