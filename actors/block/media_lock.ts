/**
 * One writer per media: a node holds an OS lock on its media file (or block device) for as long
 * as it has it open, as qemu and md do, so a second process opening the same media is refused
 * with a message naming the holder instead of writing beside it. The lock is flock(2) through
 * libc (released by the kernel when the holder dies, however it dies); the holder is found in
 * /proc/locks. Where FFI is not allowed, a lock file beside the media holding the holder's pid
 * stands in, taken over only when that pid is gone.
 */
import * as fs from "node:fs";
import { MediaError } from "./media.ts";

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

const SYMBOLS = {
  flock: { parameters: ["i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | null | undefined;

function loadLib(): Lib | null {
  if (lib !== undefined) return lib;
  try {
    lib = Deno.build.os === "linux" ? Deno.dlopen("libc.so.6", SYMBOLS).symbols : null;
  } catch {
    lib = null;
  }
  return lib;
}

/** A held lock on one media path; `release` lets the next opener in. */
export interface MediaLock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock on `path` (exclusive for a writer, shared for a read-only opener); throws a
 * MediaError "busy" naming the holder when another opener has it.
 */
export function lockMedia(path: string, exclusive: boolean): MediaLock {
  const libc = loadLib();
  // Each way also honours the other's mark, so openers with and without FFI exclude each other.
  const filed = lockFileHolder(path);
  if (filed !== undefined) throw busy(path, filed);
  return libc === null ? lockFile(path) : flockMedia(libc, path, exclusive);
}

function flockMedia(libc: Lib, path: string, exclusive: boolean): MediaLock {
  const fd = fs.openSync(path, fs.constants.O_RDONLY);
  if (libc.flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) !== 0) {
    const at = libc.__errno_location();
    const code = at ? new Deno.UnsafePointerView(at).getInt32() : 0;
    const holder = code === EWOULDBLOCK ? holderOf(fd) : undefined;
    fs.closeSync(fd);
    if (code !== EWOULDBLOCK) {
      throw new MediaError("busy", `cannot lock ${path} (errno ${code})`);
    }
    throw busy(path, holder);
  }
  let held = true;
  return {
    path,
    release: () => {
      if (!held) return;
      held = false;
      fs.closeSync(fd); // closing the descriptor drops the flock
    },
  };
}

/** Who holds a flock on the file open as `fd`, from /proc/locks; undefined when unknown. */
function holderOf(fd: number): number | undefined {
  try {
    return flockHolder(fs.fstatSync(fd));
  } catch {
    return undefined;
  }
}

function flockHolder(stat: fs.Stats): number | undefined {
  let locks: string;
  try {
    locks = Deno.readTextFileSync("/proc/locks");
  } catch {
    return undefined;
  }
  // Linux's dev_t encoding (glibc's major()/minor()); /proc/locks prints them in hex.
  const dev = BigInt(stat.dev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  const want = `${hex2(major)}:${hex2(minor)}:${stat.ino}`;
  for (const line of locks.split("\n")) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; waiters have "->" and hold nothing.
    const fields = line.trim().split(/\s+/);
    if (fields[1] !== "FLOCK") continue;
    if (fields[5] === want) return Number(fields[4]);
  }
  return undefined;
}

function hex2(n: bigint): string {
  return n.toString(16).padStart(2, "0");
}

/** What `pid` runs, shortened for a message ("pid 123 (dst node --listen ...)"). */
export function describePid(pid: number): string {
  if (pid === Deno.pid) return `pid ${pid} (this process: the media is open twice)`;
  try {
    const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter((a) => a);
    // A dst command run through deno reads better from its subcommand on.
    const main = args.findIndex((a) => a.endsWith("main.ts"));
    const shown = main >= 0 ? ["dst", ...args.slice(main + 1)] : args;
    const text = shown.join(" ");
    return `pid ${pid} (${text.length > 160 ? `${text.slice(0, 157)}...` : text})`;
  } catch {
    return `pid ${pid}`;
  }
}

function busy(path: string, holder: number | undefined): MediaError {
  const who = holder === undefined ? "another process" : describePid(holder);
  return new MediaError(
    "busy",
    `${path} is in use: ${who} holds its lock; one process writes a media at a time ` +
      "(stop that one first, or pick other media)",
  );
}

/** The live pid named by a lock file beside `path`, if any. */
function lockFileHolder(path: string): number | undefined {
  let pid: number;
  try {
    pid = Number(Deno.readTextFileSync(`${path}.lock`).trim());
  } catch {
    return undefined;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined;
  try {
    Deno.statSync(`/proc/${pid}`);
    return pid;
  } catch {
    return undefined;
  }
}

/** Without FFI: a lock file beside the media naming the holder's pid. */
function lockFile(path: string): MediaLock {
  const lockPath = `${path}.lock`;
  const flocked = (() => {
    try {
      return flockHolder(fs.statSync(path));
    } catch {
      return undefined;
    }
  })();
  if (flocked !== undefined) throw busy(path, flocked);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      Deno.writeTextFileSync(lockPath, `${Deno.pid}\n`, { createNew: true });
      let held = true;
      return {
        path,
        release: () => {
          if (!held) return;
          held = false;
          try {
            Deno.removeSync(lockPath);
          } catch { /* already gone */ }
        },
      };
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    const pid = lockFileHolder(path);
    if (pid !== undefined) throw busy(path, pid);
    Deno.removeSync(lockPath); // its holder died without removing it
  }
  throw busy(path, undefined);
}

/** The pid holding `path`'s lock now, or undefined when it is free (for checks before a start). */
export function mediaHolder(path: string): string | undefined {
  let lock: MediaLock;
  try {
    lock = lockMedia(path, false);
  } catch (error) {
    if (error instanceof MediaError && error.code === "busy") return error.message;
    return undefined;
  }
  lock.release();
  return undefined;
}
