/**
 * `dst status [URL]`: asks a status endpoint (of `dst serve`, `dst start`, `dst export` or
 * `dst node` run with --status) for the storage tree and prints it, with progress bars for
 * running resyncs; `--watch` redraws it every interval, `--json` prints the raw JSON for scripts.
 * Its exit code is the storage's health (0 healthy, 1 degraded, 2 down or unreachable), so a
 * script or a monitoring check can act on it without parsing anything.
 */
import type { StatusJson } from "../status/tree.ts";
import { statusText } from "../status/text.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlagsAndArgs } from "./flags.ts";
import { dataDirOf, findEndpoint, statusBase } from "./run_record.ts";
import { healthOf } from "../status/health.ts";
import { untilStopSignal } from "./signals.ts";
import { consoleLogger } from "../util/log.ts";

const help = `Usage: dst status [URL] [--data DIR] [--watch [--interval SECONDS]] [--json]

Shows the storage tree of a running dst process: its health, each node's kind, state, size and
counters, how long a node has been out of sync and why, and a progress bar under every node
that is resyncing or verifying. The exit code says the health, for scripts (as mdadm --detail
--test does):

  0   healthy: every node in sync
  1   degraded: every block is served, with less redundancy (a leg out, suspended,
      rebuilding or being judged)
  2   down (some blocks cannot be served) or the status endpoint cannot be reached
  64  the command line was wrong

Arguments:
  URL                 the status endpoint (http://HOST:PORT/ or HOST:PORT). Without it:
                      DST_STATUS_URL, else the dst start serving from DIR (its start.json),
                      else http://127.0.0.1:8080/

Options:
  --data DIR          where to look for a running dst start (default DST_DATA, else .data)
  --watch             redraw until Ctrl-C (the exit code is then the last health seen)
  --interval SECONDS  with --watch: time between redraws (default 1)
  --json              print the status as JSON (one document; with --watch one per line)
  -h, --help          show this help

Examples:
  dst status                          # the dst start of this folder
  dst status 127.0.0.1:8080 --watch
  dst status 10.0.0.5:8080 >/dev/null || alert "dst is not healthy"`;

/** Exit code of a bad command line: 0 to 2 say the health. */
const USAGE_EXIT = 64;

/** Turns "HOST:PORT" or a URL into the /api/tree URL; a non-http URL is a UsageError. */
export function treeUrl(given: string): URL {
  return new URL("api/tree", statusBase(given, "URL"));
}

async function fetchStatus(url: URL, from: string): Promise<StatusJson> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    const why = error instanceof DOMException && error.name === "TimeoutError"
      ? "no answer within 5 s"
      : (error as Error).message;
    throw new Unreachable(
      `cannot reach ${url.origin}: ${why}; is dst running with --status there? ` +
        `(the address came from ${from})`,
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new Unreachable(`${url} answered ${response.status} ${response.statusText}`);
  }
  return await response.json() as StatusJson;
}

/** The status endpoint could not be asked: exit 2, like a storage that is down. */
class Unreachable extends Error {}

async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlagsAndArgs(args, {
    data: { type: "string" },
    watch: { type: "boolean" },
    interval: { type: "string", default: "1" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (positionals.length > 1) {
    throw new UsageError(`give at most one URL (got ${positionals.join(" ")})`);
  }
  const interval = Number(values.interval);
  if (!Number.isFinite(interval) || interval < 0.1 || interval > 3600) {
    throw new UsageError(`--interval ${values.interval}: give seconds between 0.1 and 3600`);
  }
  if (positionals[0] !== undefined) treeUrl(positionals[0]); // a bad URL is a usage error
  let found;
  try {
    found = await findEndpoint(positionals[0], dataDirOf(values.data));
  } catch (error) {
    console.error(`dst status: ${(error as Error).message}`);
    return 2;
  }
  const url = treeUrl(found.url);
  const colour = Deno.stdout.isTerminal() && Deno.env.get("NO_COLOR") === undefined;
  const show = (status: StatusJson) =>
    values.json ? JSON.stringify(status, null, values.watch ? undefined : 2) : statusText(status, {
      colour,
    }).trimEnd();

  if (!values.watch) {
    try {
      const status = await fetchStatus(url, found.from);
      console.log(show(status));
      return healthOf(status.tree).code;
    } catch (error) {
      if (!(error instanceof Unreachable)) throw error;
      console.error(`dst status: ${error.message}`);
      return 2;
    }
  }
  const stop = untilStopSignal({ log: consoleLogger(undefined, "dst status") });
  let code = 2;
  try {
    let stopped = false;
    stop.signal.then(() => stopped = true);
    while (!stopped) {
      let text: string;
      try {
        const status = await fetchStatus(url, found.from);
        code = healthOf(status.tree).code;
        text = show(status);
      } catch (error) {
        if (!(error instanceof Unreachable)) throw error;
        code = 2;
        text = `${new Date().toLocaleTimeString()}  ${error.message}`;
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
    return code;
  } finally {
    stop.dispose();
  }
}

export const statusCommand: Command = {
  name: "status",
  summary: "show the storage tree of a running dst (--watch to follow, --json for scripts)",
  help,
  usageExitCode: USAGE_EXIT,
  run,
};
