/**
 * The small status page served at `/` until the web client exists: server id, key fingerprint, users online,
 * how to connect. Embedded as code, so the compiled binary needs no files.
 *
 * @module
 */

/** What the status page shows. */
export interface StatusInfo {
  serverId: string;
  fingerprint: string;
  usersOnline: number;
  wsUrl: string;
  version: string;
  labModes: string[];
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Render the status page HTML. */
export function statusPage(i: StatusInfo): string {
  const lab = i.labModes.length
    ? `<p class="warn">Lab mode on: ${esc(i.labModes.join(", "))}. This node is deliberately weakened.</p>`
    : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>socp node</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#1d232a}
code{background:#eef1f4;padding:.1rem .3rem;border-radius:4px;word-break:break-all}
.warn{background:#fff1c2;padding:.5rem;border-radius:4px}
dt{font-weight:600}
</style></head><body>
<h1>socp node</h1>
${lab}
<dl>
<dt>Server id</dt><dd><code>${esc(i.serverId)}</code></dd>
<dt>Key fingerprint (SHA-256 of the public key)</dt><dd><code>${esc(i.fingerprint)}</code></dd>
<dt>Users online</dt><dd id="users-online">${i.usersOnline}</dd>
</dl>
<h2>Connect</h2>
<p>From a terminal: <code>socp chat --server ${esc(i.wsUrl)} --name yourname</code></p>
<p>Any SOCP v1.3 client can connect with a WebSocket to <code>${esc(i.wsUrl)}</code>.</p>
<p><small>socp ${esc(i.version)} · <a href="/.well-known/socp">/.well-known/socp</a> ·
<a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></small></p>
</body></html>
`;
}
