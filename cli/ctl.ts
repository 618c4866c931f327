/**
 * `dst ctl ACTION ...`: maintenance of a running storage (suspend, resume, clean, dirty, verify,
 * add-leg, remove-leg) as a thin HTTP client of the control routes its status endpoint serves,
 * with the bearer token from --token-file or DST_STATUS_TOKEN. Refusals come back as the
 * server's own words, with what to do for a missing token, an unknown node or an impossible act.
 */
import { CONTROL_ACTIONS, type ControlAction, type LegSpec } from "../storage/control.ts";
import { osReason } from "../util/os_error.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlagsAndArgs } from "./flags.ts";
import { dataDirOf, findEndpoint, type Found, statusBase } from "./run_record.ts";

const help = `Usage: dst ctl [--url URL | --data DIR] [--token-file PATH] ACTION ARGS...

Asks a running dst (serve or start, run with --status) to act on its mirrors.

Actions:
  suspend LEG                  take a leg out of service; its misses are tracked
  resume LEG                   bring a suspended (or refused) leg back; it resyncs what it missed
  clean LEG [--force]          declare a leg's data good as it is, without a copy. Refused for
                               a leg that may lack writes (it missed some, or a split brain)
                               unless --force: it would then serve old data where it missed them
  dirty LEG                    declare a leg's data bad: it is resynced in full
  verify MIRROR [--repair-from LEG]
                               compare the in-sync legs' digests chunk by chunk; where a majority
                               agrees the others are resynced; where none does (two legs that
                               differ) nothing is repaired unless --repair-from names the leg to
                               trust. Exit 0: the legs agree; 1: differences found and repaired;
                               2: differences left unrepaired
  add-leg MIRROR NAME SPEC     add a leg while serving: SPEC is a node URL (tcp://, unix://,
                               quic://) or a topology leaf as JSON ({"kind": "file", ...})
  remove-leg MIRROR LEG        remove a leg while serving (never the last in-sync one)

Options:
  --url URL           the status endpoint; HOST:PORT is enough. Default: DST_STATUS_URL, else
                      the dst start serving from DIR (its start.json), else 127.0.0.1:8080
  --data DIR          where to look for a running dst start (default DST_DATA, else .data)
  --token-file PATH   file holding the control token (dst serve --status-token-file); else
                      DST_STATUS_TOKEN, else the token file of the dst start found in DIR
  --force             clean: accept a leg's data even where it may lack writes
  --repair-from LEG   verify: repair differing chunks from this leg
  -h, --help          show this help

Example:
  dst ctl --url 127.0.0.1:8080 --token-file /var/lib/dst/status.token suspend leg1`;

/** Arguments each action takes after its name. */
const ARITY: Record<ControlAction, readonly string[]> = {
  suspend: ["LEG"],
  resume: ["LEG"],
  clean: ["LEG"],
  dirty: ["LEG"],
  verify: ["MIRROR"],
  "add-leg": ["MIRROR", "NAME", "SPEC"],
  "remove-leg": ["MIRROR", "LEG"],
};

/** The base URL of a status endpoint, from "HOST:PORT" or a URL. */
export function baseUrl(given: string): URL {
  return statusBase(given, "--url");
}

/**
 * The token file of the `dst start` whose record named the endpoint, unless DST_STATUS_TOKEN
 * says otherwise.
 */
function fromRecord(found: Found): string | undefined {
  const env = Deno.env.get("DST_STATUS_TOKEN");
  return env !== undefined && env !== "" ? undefined : found.tokenFile;
}

/** A leg spec from the command line: a node URL, or a topology leaf as JSON. */
export function legSpec(text: string): LegSpec {
  if (/^(tcp|unix|quic):\/\//.test(text)) return { kind: "remote", url: text };
  if (text.trimStart().startsWith("{")) {
    try {
      return JSON.parse(text) as LegSpec;
    } catch (error) {
      throw new UsageError(`SPEC is not valid JSON: ${(error as Error).message}`);
    }
  }
  throw new UsageError(
    `SPEC ${text}: give a node URL (unix:///run/dst/c.sock, tcp://host:port) or JSON ` +
      `such as '{"kind": "file", "path": "c.img", "size": "1G"}'`,
  );
}

/** The HTTP request an action makes. */
export function requestFor(
  action: ControlAction,
  args: readonly string[],
  flags: { readonly force?: boolean; readonly repairFrom?: string } = {},
): { method: "POST" | "DELETE"; path: string; body: unknown } {
  const e = encodeURIComponent;
  switch (action) {
    case "clean":
      return {
        method: "POST",
        path: `api/nodes/${e(args[0]!)}/clean`,
        body: flags.force ? { force: true } : {},
      };
    case "verify":
      return {
        method: "POST",
        path: `api/nodes/${e(args[0]!)}/verify`,
        body: flags.repairFrom === undefined ? {} : { repairFrom: flags.repairFrom },
      };
    case "add-leg":
      return {
        method: "POST",
        path: `api/nodes/${e(args[0]!)}/legs`,
        body: { name: args[1]!, spec: legSpec(args[2]!) },
      };
    case "remove-leg":
      return { method: "DELETE", path: `api/nodes/${e(args[0]!)}/legs/${e(args[1]!)}`, body: {} };
    default:
      return { method: "POST", path: `api/nodes/${e(args[0]!)}/${action}`, body: {} };
  }
}

async function loadToken(file: string | undefined): Promise<string | undefined> {
  if (file !== undefined) {
    try {
      return (await Deno.readTextFile(file)).trim();
    } catch (error) {
      throw new Error(`cannot read the token file ${file}: ${osReason(error as Error)}`);
    }
  }
  const env = Deno.env.get("DST_STATUS_TOKEN");
  return env === undefined || env === "" ? undefined : env;
}

/** Why the server refused, said so the user knows what to do. */
function refusal(status: number, error: string, hasToken: boolean): string {
  switch (status) {
    case 401:
      return hasToken
        ? `the status endpoint refused the token (401): use the token of this dst ` +
          `(the file given to dst serve --status-token-file, or its DST_STATUS_TOKEN)`
        : `the control actions need the status token (401): give --token-file PATH or set ` +
          `DST_STATUS_TOKEN`;
    case 404:
      return `not found (404): ${error}`;
    case 409:
      return `refused (409): ${error}`;
    case 400:
      return `bad request (400): ${error}`;
    default:
      return `the status endpoint failed (${status}): ${error}`;
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlagsAndArgs(argv, {
    url: { type: "string" },
    data: { type: "string" },
    "token-file": { type: "string" },
    force: { type: "boolean" },
    "repair-from": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const [name, ...args] = positionals;
  if (name === undefined) throw new UsageError(`give an action: ${CONTROL_ACTIONS.join(", ")}`);
  if (!(CONTROL_ACTIONS as readonly string[]).includes(name)) {
    throw new UsageError(`no action "${name}"; use one of ${CONTROL_ACTIONS.join(", ")}`);
  }
  const action = name as ControlAction;
  const want = ARITY[action];
  if (args.length !== want.length) {
    throw new UsageError(`${action} takes ${want.join(" ")}, got ${args.length} argument(s)`);
  }
  if (values.force && action !== "clean") throw new UsageError("--force goes with clean only");
  if (values["repair-from"] !== undefined && action !== "verify") {
    throw new UsageError("--repair-from goes with verify only");
  }
  const request = requestFor(action, args, {
    ...(values.force ? { force: true } : {}),
    ...(values["repair-from"] === undefined ? {} : { repairFrom: values["repair-from"] }),
  });
  if (values.url !== undefined) baseUrl(values.url); // a bad URL is a usage error first
  const found = await findEndpoint(values.url, dataDirOf(values.data));
  const base = baseUrl(found.url);
  const token = await loadToken(values["token-file"] ?? fromRecord(found));
  const url = new URL(request.path, base);
  let response: Response;
  try {
    response = await fetch(url, {
      method: request.method,
      headers: {
        "Content-Type": "application/json",
        ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(request.body),
      // verify reads every chunk of every leg: give it time.
      signal: AbortSignal.timeout(action === "verify" ? 3_600_000 : 60_000),
    });
  } catch (error) {
    throw new Error(
      `cannot reach ${base.origin}: ${(error as Error).message}; is dst running with --status?`,
    );
  }
  const text = await response.text();
  let body: {
    message?: string;
    error?: string;
    verify?: { mismatchedChunks: number; unresolvedBytes: number };
  } = {};
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text };
  }
  if (!response.ok) {
    throw new Error(
      refusal(response.status, body.error ?? response.statusText, token !== undefined),
    );
  }
  console.log(body.message ?? "done");
  if (body.verify !== undefined && body.verify.mismatchedChunks > 0) {
    return body.verify.unresolvedBytes > 0 ? 2 : 1;
  }
  return 0;
}

export const ctlCommand: Command = {
  name: "ctl",
  summary: "maintenance of a running storage: suspend, resume, clean, dirty, verify, legs",
  help,
  run,
};
