/**
 * The status endpoint: a hono app that shows the storage tree as JSON and as a small page that
 * refreshes itself. Bound to loopback unless told otherwise.
 */
import { Hono } from "hono";
import type { TreeNode } from "../storage/assemble.ts";
import { treeJson } from "./tree.ts";
import { dashboardHtml } from "./dashboard.ts";

export interface StatusSource {
  /** The storage's name (the root node's). */
  readonly name: string;
  readonly tree: TreeNode;
  /** Where clients attach, shown on the page. */
  readonly exports: readonly string[];
}

export function statusApp(source: StatusSource): Hono {
  const app = new Hono();
  app.get("/", (c) => c.html(dashboardHtml(source.name)));
  app.get("/api/tree", (c) => c.json({ exports: source.exports, tree: treeJson(source.tree) }));
  app.notFound((c) => c.json({ error: `no such page: ${c.req.path}` }, 404));
  return app;
}

/** Serves the app on HOST:PORT; resolves once listening, with the bound address. */
export function serveStatus(
  app: Hono,
  hostPort: string,
): Promise<{ url: string; shutdown(): Promise<void> }> {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(hostPort);
  if (match === null) {
    throw new Error(`--status ${hostPort}: expected HOST:PORT, e.g. 127.0.0.1:8080`);
  }
  const hostname = match[1]!.replace(/^\[(.*)\]$/, "$1");
  const port = Number(match[2]);
  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname,
        port,
        onListen: (addr) => {
          const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
          resolve({ url: `http://${host}:${addr.port}/`, shutdown: () => server.shutdown() });
        },
      }, app.fetch);
    } catch (error) {
      reject(error);
    }
  });
}
