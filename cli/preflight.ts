/**
 * Checks that run before a command creates or starts anything: every address it will listen on
 * is tried (TCP and QUIC ports bound and released, Unix socket folders looked at, live sockets
 * refused) and every media file it may create is looked at (folder there and writable, size
 * given). All problems are reported at once, each naming its address or path and the flag or
 * field it came from, so a command that cannot run leaves nothing behind.
 */
import { dirname } from "node:path";
import {
  checkMedia,
  folderProblem,
  type PlannedMedia,
  PreflightError,
} from "../storage/media_check.ts";
import { afterScheme, parseHostPort, schemeOf } from "../transport/url.ts";
import { UsageError } from "./command.ts";
import { osReason } from "../util/os_error.ts";

export { type PlannedMedia, PreflightError };

/** An address the command will listen on, and the flag or field that named it. */
export interface PlannedListen {
  /** tcp://HOST:PORT, quic://HOST:PORT or unix:///PATH; a status endpoint's HOST:PORT as tcp://. */
  readonly url: string;
  readonly from: string;
}

/** `HOST:PORT` of a status endpoint as the tcp:// URL preflight checks. */
export function statusListenUrl(hostPort: string): string {
  return `tcp://${hostPort}`;
}

/** Throws PreflightError naming every address that cannot be listened on and every bad path. */
export async function preflight(
  listens: readonly PlannedListen[],
  media: readonly PlannedMedia[] = [],
): Promise<void> {
  const problems = [...await checkListens(listens), ...await checkMedia(media)];
  if (problems.length > 0) throw new PreflightError(problems);
}

/** Problems with the listen addresses; ports are held until all are tried, to catch repeats. */
async function checkListens(listens: readonly PlannedListen[]): Promise<string[]> {
  const problems: string[] = [];
  const held: { close(): void }[] = [];
  const sockets = new Map<string, string>();
  try {
    for (const { url, from } of listens) {
      const problem = await checkListen(url, held, sockets, from);
      if (problem !== undefined) problems.push(`${from}: cannot listen on ${url}: ${problem}`);
    }
  } finally {
    for (const h of held) h.close();
  }
  return problems;
}

async function checkListen(
  url: string,
  held: { close(): void }[],
  sockets: Map<string, string>,
  from: string,
): Promise<string | undefined> {
  let scheme: string;
  try {
    scheme = schemeOf(url);
  } catch (error) {
    return (error as Error).message;
  }
  if (scheme === "unix") {
    let path: string;
    try {
      path = decodeURIComponent(afterScheme(url, "unix"));
    } catch (error) {
      return (error as Error).message;
    }
    const other = sockets.get(path);
    if (other !== undefined) return `${other} listens there too`;
    sockets.set(path, from);
    return await checkSocketPath(path);
  }
  if (scheme !== "tcp" && scheme !== "quic") return undefined; // others check their own
  let address: { hostname: string; port: number };
  try {
    address = parseHostPort(url, scheme);
  } catch (error) {
    return (error as Error).message;
  }
  try {
    if (scheme === "tcp") held.push(Deno.listen(address));
    else held.push(Deno.listenDatagram({ transport: "udp", ...address }));
  } catch (error) {
    return error instanceof Error ? osReason(error) : String(error);
  }
  return undefined;
}

/** A Unix socket path is usable when its folder is there and no live process listens on it. */
async function checkSocketPath(path: string): Promise<string | undefined> {
  const folder = await folderProblem(dirname(path));
  if (folder !== undefined) return folder;
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    return osReason(error as Error);
  }
  if (!info.isSocket) {
    return `${path} exists and is not a socket; refusing to replace it (remove it or pick another path)`;
  }
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    return "address already in use (another process listens on that socket)";
  } catch {
    return undefined; // a stale socket of a dead process: the server replaces it
  }
}

/** Media that is missing and has no size to be made with is a mistake on the command line. */
export async function requireSizeForNew(path: string, size: number | undefined): Promise<void> {
  if (size !== undefined) return;
  const exists = await Deno.lstat(path).then(() => true, () => false);
  if (!exists) throw new UsageError(`${path} does not exist: give --size SIZE to create it`);
}
