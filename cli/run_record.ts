/**
 * How `dst status` and `dst ctl` find a running `dst start` without being told: `dst start`
 * writes `DIR/start.json` beside its data (its pid, status URL, token file and NBD URIs) once it
 * serves, and removes it when it stops. The clients look for it in `--data DIR`, DST_DATA, or
 * `.data` in the current folder (where `deno task start` keeps its data), after an explicit URL
 * and DST_STATUS_URL. The token is never in the record: only the path of the file holding it.
 */
import { resolve } from "node:path";
import { UsageError } from "./command.ts";

export interface StartRecord {
  readonly pid: number;
  readonly statusUrl: string;
  readonly tokenFile: string;
  readonly nbd: readonly string[];
  /** Wall time it began serving (ms since the epoch). */
  readonly startedAt: number;
}

const NAME = "start.json";

export function recordPath(dataDir: string): string {
  return `${dataDir}/${NAME}`;
}

/** Writes the record (replacing one a crashed run left). */
export async function writeRecord(dataDir: string, record: StartRecord): Promise<void> {
  const path = recordPath(dataDir);
  const temp = `${path}.${record.pid}.tmp`;
  await Deno.writeTextFile(temp, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
  await Deno.rename(temp, path);
}

/** Removes the record if it is still this process's. */
export async function removeRecord(dataDir: string, pid: number): Promise<void> {
  const found = await readRecord(dataDir);
  if (found?.pid === pid) await Deno.remove(recordPath(dataDir)).catch(() => {});
}

export async function readRecord(dataDir: string): Promise<StartRecord | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(recordPath(dataDir));
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text) as Partial<StartRecord>;
    if (typeof value.statusUrl !== "string" || typeof value.pid !== "number") return undefined;
    return value as StartRecord;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` still runs (Linux /proc; elsewhere assumed so). */
export function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch (error) {
    return !(error instanceof Deno.errors.NotFound);
  }
}

/** Where the status endpoint is, and where that was learned (said when it cannot be reached). */
export interface Found {
  readonly url: string;
  readonly from: string;
  /** The token file of the `dst start` found, when it was found from its record. */
  readonly tokenFile?: string;
}

/** The folder whose start record the clients look at. */
export function dataDirOf(flag: string | undefined): string {
  return resolve(flag ?? Deno.env.get("DST_DATA") ?? ".data");
}

/**
 * The status endpoint to talk to: `given` (a URL or HOST:PORT), else DST_STATUS_URL, else the
 * record of a running `dst start` in `dataDir`, else dst start's default address.
 */
export async function findEndpoint(
  given: string | undefined,
  dataDir: string,
): Promise<Found> {
  if (given !== undefined) return { url: given, from: "the command line" };
  const env = Deno.env.get("DST_STATUS_URL");
  if (env !== undefined && env !== "") return { url: env, from: "DST_STATUS_URL" };
  const record = await readRecord(dataDir);
  if (record !== undefined) {
    if (!running(record.pid)) {
      throw new Error(
        `${recordPath(dataDir)} was left by dst start (pid ${record.pid}), which no longer runs: ` +
          "start it again, or give the status URL",
      );
    }
    return {
      url: record.statusUrl,
      from: recordPath(dataDir),
      ...(typeof record.tokenFile === "string" ? { tokenFile: record.tokenFile } : {}),
    };
  }
  return { url: "http://127.0.0.1:8080/", from: "dst start's default address" };
}

/**
 * The base URL of a status endpoint from "HOST:PORT", "HOST:PORT/path" or an http(s) URL.
 * Anything else that looks like a URL ("htp:/x", "tcp://...") is refused by name, not dialled.
 */
export function statusBase(given: string, what: string): URL {
  const text = given.trim();
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):(.*)$/.exec(text);
  // "localhost:8080" and "127.0.0.1:8080/x" are HOST:PORT, not a scheme.
  const hostPort = scheme !== null && /^\d+(\/.*)?$/.test(scheme[2]!);
  let url: URL;
  if (scheme !== null && !hostPort) {
    const name = scheme[1]!.toLowerCase();
    if (name !== "http" && name !== "https") {
      throw new UsageError(
        `${what} ${given}: "${name}:" is not a scheme the status endpoint speaks; ` +
          "give http://HOST:PORT/ or HOST:PORT",
      );
    }
    if (!scheme[2]!.startsWith("//")) {
      throw new UsageError(`${what} ${given}: expected ${name}://HOST:PORT/`);
    }
    url = parseUrl(text, what, given);
  } else {
    url = parseUrl(`http://${text}`, what, given);
  }
  if (url.hostname === "") throw new UsageError(`${what} ${given}: no host in it`);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url;
}

function parseUrl(text: string, what: string, given: string): URL {
  try {
    return new URL(text);
  } catch {
    throw new UsageError(`${what} ${given} is not a URL (example: http://127.0.0.1:8080/)`);
  }
}
