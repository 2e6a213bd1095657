/// <reference lib="dom" />
/**
 * The web app's network dialog: what this server is and how to join it, who it is linked to and who is online.
 *
 * @module
 */
import { h, replace } from "./dom.ts";
import { mib, toast } from "./ui.ts";

/**
 * Open the network dialog `d`: this server, its bootstrap entry, linked servers and users online (from
 * /api/network); `maxFileBytes` gets the server's file limit.
 */
export async function openNetwork(d: HTMLDialogElement, maxFileBytes: (n: number) => void): Promise<void> {
  const body = h("div", {}, h("p", {}, "Loading…"));
  replace(d, [
    h("h2", { id: "network-h" }, "Network"),
    body,
    h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")),
  ]);
  if (!d.open) d.showModal();
  try {
    const r = await fetch("/api/network", { cache: "no-store" });
    const n = await r.json();
    const copy = h("button", {
      type: "button",
      id: "copy-bootstrap",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(n.bootstrap);
          toast("Bootstrap entry copied.");
        } catch {
          toast("Copying is not allowed here: select the entry and copy it by hand.");
        }
      },
    }, "Copy");
    replace(body, [
      h("dl", { class: "kv" }, [
        h("dt", {}, "This server"),
        h("dd", { class: "mono", id: "net-server-id" }, n.server_id),
        h("dt", {}, "Fingerprint"),
        h("dd", { class: "mono" }, n.fingerprint),
        h("dt", {}, "Bootstrap entry"),
        h("dd", {}, [
          h("div", { class: "row" }, [
            copy,
            h("span", { class: "small muted" }, "another node joins with --bootstrap"),
          ]),
          h("code", { id: "net-bootstrap", class: "mono small bootstrap", tabindex: 0 }, n.bootstrap),
        ]),
        h("dt", {}, "Terminal"),
        h("dd", {}, [
          h("code", {}, n.chat_command ?? `deno task chat --server ${n.ws_url} --name yourname`),
          h(
            "span",
            { class: "small muted" },
            " (in the socp folder; with the single executable: ./socp chat …)",
          ),
        ]),
        h("dt", {}, "Largest file"),
        h("dd", {}, mib(n.max_file_bytes)),
      ]),
      h("h3", {}, `Linked servers (${n.linked_servers.length})`),
      n.linked_servers.length
        ? h(
          "ul",
          { id: "net-linked" },
          n.linked_servers.map((l: { server_id: string; host: string; port: number }) =>
            h("li", { class: "mono small" }, `${l.server_id} at ${l.host}:${l.port}`)
          ),
        )
        : h("p", { class: "muted" }, "None: this server is alone."),
      h("h3", {}, `Users online (${n.users_online.length})`),
      h("table", { id: "net-users" }, [
        h(
          "thead",
          {},
          h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Home server")),
        ),
        h(
          "tbody",
          {},
          n.users_online.map((u: { user_id: string; server_id: string; name: string }) =>
            h(
              "tr",
              {},
              h("td", {}, u.name),
              h("td", { class: "mono small" }, u.server_id === n.server_id ? "this server" : u.server_id),
            )
          ),
        ),
      ]),
    ]);
    maxFileBytes(n.max_file_bytes);
  } catch {
    replace(
      body,
      h("p", { class: "error" }, "Could not reach the server. Check the connection and try again."),
    );
  }
}
