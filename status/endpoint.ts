/**
 * Starting the status endpoint the same way in every command that has `--status HOST:PORT`
 * (`dst serve`, `dst start`, `dst export`, `dst node`): the token for control actions is loaded
 * or made, the app served, and the lines to print at start worked out in one place. An endpoint
 * that cannot listen says on which address, and takes back the token file it just made. It keeps
 * the charts' samples while it runs, and records control actions in the event history.
 */
import type { TreeNode } from "../storage/assemble.ts";
import type { StorageControl } from "../storage/control.ts";
import { serveStatus, statusApp } from "./app.ts";
import type { IoStats } from "./io.ts";
import { loadStatusToken, type StatusToken } from "./token.ts";
import { EventLog, recordedControl } from "./events.ts";
import { Sampler, SampleRing } from "./samples.ts";
import { DST_VERSION } from "./process.ts";
import { osError, withOsContext } from "../util/os_error.ts";

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
  /** The process's event history (leg moves are fed into it by the caller); else a new one. */
  readonly events?: EventLog;
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
  const token = options.control === undefined ? undefined : await withOsContext(
    "keep the status token in",
    options.tokenFile ?? "DST_STATUS_TOKEN",
    () => loadStatusToken(options.tokenFile),
  );
  let events = options.events;
  if (events === undefined) {
    events = new EventLog();
    events.add({
      level: "info",
      kind: "process",
      message: `dst ${DST_VERSION} serving ${options.name}`,
    });
  }
  const sampler = new Sampler(
    { tree: options.tree, ...(options.io === undefined ? {} : { io: options.io }) },
    new SampleRing(),
  );
  const app = statusApp({
    name: options.name,
    tree: options.tree,
    exports: options.exports,
    ...(options.io === undefined ? {} : { io: options.io }),
    ...(options.control === undefined ? {} : { control: recordedControl(options.control, events) }),
    ...(token === undefined ? {} : { token: token.token }),
    events,
    samples: sampler.ring,
  });
  let http: Awaited<ReturnType<typeof serveStatus>>;
  try {
    http = await serveStatus(app, options.listen);
    sampler.start();
  } catch (error) {
    // A token file made for an endpoint that never served is not left behind.
    if (token?.generated && options.tokenFile !== undefined) {
      await Deno.remove(options.tokenFile).catch(() => {});
    }
    throw osError("listen on", `tcp://${options.listen} (status)`, error);
  }
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
    shutdown: () => {
      sampler.stop();
      return http.shutdown();
    },
  };
}
