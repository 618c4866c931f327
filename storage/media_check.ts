/**
 * Looking at media paths before anything is created: a file that will be made needs its folder
 * there and writable and a size; one that exists must not be a folder nor held by another
 * process; no two nodes share one.
 * Used by the commands' preflight and by assembly, so a storage that cannot be built creates
 * nothing.
 */
import { accessSync, constants } from "node:fs";
import { dirname } from "node:path";
import { osReason } from "../util/os_error.ts";
import { mediaHolder } from "../actors/block/media_lock.ts";

/** Media a command opens, or creates when missing, and the flag or field that named it. */
export interface PlannedMedia {
  readonly path: string;
  readonly from: string;
  /** The size to create it with; undefined: it must exist. */
  readonly size: number | undefined;
}

/** Something a command cannot do; the message lists every problem found. */
export class PreflightError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.length === 1 ? problems[0]! : `cannot start:\n  ${problems.join("\n  ")}`);
    this.name = "PreflightError";
  }
}

/** Why `folder` cannot hold a new file, or undefined. */
export async function folderProblem(folder: string): Promise<string | undefined> {
  try {
    const info = await Deno.stat(folder);
    if (!info.isDirectory) return `${folder} is not a folder`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      return `folder ${folder} does not exist (create it first)`;
    }
    return `folder ${folder}: ${osReason(error as Error)}`;
  }
  try {
    accessSync(folder, constants.W_OK);
  } catch {
    return `folder ${folder} is not writable by this user`;
  }
  return undefined;
}

/** Problems with media paths: a missing file needs a size and a writable folder. */
export async function checkMedia(media: readonly PlannedMedia[]): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Map<string, string>();
  for (const { path, from, size } of media) {
    const other = seen.get(path);
    if (other !== undefined) {
      problems.push(`${from}: ${path} is already used by ${other}; each media has one owner`);
      continue;
    }
    seen.set(path, from);
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.stat(path);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        problems.push(`${from}: cannot open ${path}: ${osReason(error as Error)}`);
        continue;
      }
    }
    if (info !== undefined) {
      if (info.isDirectory) problems.push(`${from}: ${path} is a folder, not media`);
      else {
        // Media another process holds is reported now, before anything starts (media_lock.ts).
        const busy = mediaHolder(path);
        if (busy !== undefined) problems.push(`${from}: ${busy}`);
      }
      continue;
    }
    if (size === undefined) {
      problems.push(`${from}: ${path} does not exist; give a size to create it`);
      continue;
    }
    const folder = await folderProblem(dirname(path));
    if (folder !== undefined) problems.push(`${from}: cannot create ${path}: ${folder}`);
  }
  return problems;
}
