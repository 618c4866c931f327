/**
 * Starting the status endpoint the same way in every command that has `--status HOST:PORT`
 * (`dst serve`, `dst start`, `dst export`, `dst node`): the token for control actions is loaded
 * or made, the app served, and the lines to print at start worked out in one place.
 */
import type { TreeNode } from "../storage/assemble.ts";
import type { StorageControl } from "../storage/control.ts";
import { serveStatus, statusApp } from "./app.ts";
import type { IoStats } from "./io.ts";
import { loadStatusToken, type StatusToken } from "./token.ts";

export interface EndpointOptions {
  readonly name: string;
  readonly tree: TreeNode;
  readonly exports: readonly string[];
  readonly io?: IoStats;
  readonly control?: StorageControl;
  /** HOST:PORT to listen on (port 0 picks a free one). */
  readonly listen: string;
  /** Where the control token is kept (made on first start); else DST_STATUS_TOKEN or fresh. */
  readonly tokenFile?: string;
}

export interface StatusEndpoint {
  readonly url: string;
  /** The control token, when this endpoint takes control actions. */
  readonly token?: StatusToken;
  /** What to print at start: the URL, and the token when this run made it. */
  readonly lines: readonly string[];
  shutdown(): Promise<void>;
}

export async function startStatusEndpoint(options: EndpointOptions): Promise<StatusEndpoint> {
  const token = options.control === undefined
    ? undefined
    : await loadStatusToken(options.tokenFile);
  const app = statusApp({
    name: options.name,
    tree: options.tree,
    exports: options.exports,
    ...(options.io === undefined ? {} : { io: options.io }),
    ...(options.control === undefined ? {} : { control: options.control }),
    ...(token === undefined ? {} : { token: token.token }),
  });
  const http = await serveStatus(app, options.listen);
  const lines = [`status ${http.url}`];
  // A token this run made is printed once, after the URL, so scripts reading the first lines
  // still find the URL where they expect it.
  if (token?.generated) {
    lines.push(
      `status-token ${token.token}` +
        (token.source === "generated" ? "" : ` (kept in ${token.source})`),
    );
  }
  return {
    url: http.url,
    ...(token === undefined ? {} : { token }),
    lines,
    shutdown: () => http.shutdown(),
  };
}
