/**
 * `dst status [URL]`: asks a status endpoint (of `dst serve`, `dst start`, `dst export` or
 * `dst node` run with --status) for the storage tree and prints it, with progress bars for
 * running resyncs; `--watch` redraws it every interval, `--json` prints the raw JSON for scripts.
 */
import { parseArgs } from "node:util";
import type { StatusJson } from "../status/tree.ts";
import { statusText } from "../status/text.ts";
import { type Command, UsageError } from "./command.ts";
import { untilStopSignal } from "./signals.ts";
import { consoleLogger } from "../util/log.ts";

const help = `Usage: dst status [URL] [--watch [--interval SECONDS]] [--json]

Shows the storage tree of a running dst process: each node's kind, state, size and counters,
with a progress bar under every node that is resyncing or verifying.

Arguments:
  URL                 the status endpoint (default http://127.0.0.1:8080/, where dst start
                      serves it); HOST:PORT is enough

Options:
  --watch             redraw until Ctrl-C
  --interval SECONDS  with --watch: time between redraws (default 1)
  --json              print the status as JSON (one document; with --watch one per line)
  -h, --help          show this help

Example:
  dst status 127.0.0.1:8080 --watch`;

/** Turns "HOST:PORT" or a URL into the /api/tree URL. */
export function treeUrl(given: string): URL {
  const text = /^[a-z]+:\/\//i.test(given) ? given : `http://${given}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${given} is not a URL (example: http://127.0.0.1:8080/)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`${given}: the status endpoint speaks http:// or https://`);
  }
  const base = url.pathname.endsWith("/") ? url.pathname : `${url.pathname}/`;
  return new URL(`${base}api/tree`, url);
}

async function fetchStatus(url: URL): Promise<StatusJson> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    throw new Error(
      `cannot reach ${url.origin}: ${(error as Error).message}; is dst running with --status?`,
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`${url} answered ${response.status} ${response.statusText}`);
  }
  return await response.json() as StatusJson;
}

async function run(args: string[]): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        watch: { type: "boolean" },
        interval: { type: "string", default: "1" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (positionals.length > 1) throw new UsageError("give at most one URL");
  const url = treeUrl(positionals[0] ?? "http://127.0.0.1:8080/");
  const interval = Number(values.interval);
  if (!Number.isFinite(interval) || interval < 0.1 || interval > 3600) {
    throw new UsageError(`--interval ${values.interval}: give seconds between 0.1 and 3600`);
  }
  const colour = Deno.stdout.isTerminal() && Deno.env.get("NO_COLOR") === undefined;
  const show = (status: StatusJson) =>
    values.json ? JSON.stringify(status, null, values.watch ? undefined : 2) : statusText(status, {
      colour,
    }).trimEnd();

  if (!values.watch) {
    console.log(show(await fetchStatus(url)));
    return 0;
  }
  const stop = untilStopSignal({ log: consoleLogger("info", "dst status") });
  try {
    let stopped = false;
    stop.signal.then(() => stopped = true);
    while (!stopped) {
      let text: string;
      try {
        text = show(await fetchStatus(url));
      } catch (error) {
        text = `${new Date().toLocaleTimeString()}  ${(error as Error).message}`;
      }
      // Clear and redraw in place on a terminal; plain appends when piped.
      if (colour && !values.json) console.log(`\x1b[H\x1b[2J${text}`);
      else console.log(text);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        stop.signal,
        new Promise((r) => timer = setTimeout(r, interval * 1000)),
      ]);
      clearTimeout(timer);
    }
    return 0;
  } finally {
    stop.dispose();
  }
}

export const statusCommand: Command = {
  name: "status",
  summary: "show the storage tree of a running dst (--watch to follow, --json for scripts)",
  help,
  run,
};
