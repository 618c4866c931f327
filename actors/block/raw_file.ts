/**
 * Positional I/O on one open file or block device: pread/pwrite at absolute positions (so any
 * number of requests may be in flight without a shared seek pointer), fdatasync, hole punching,
 * zero ranges, SEEK_DATA/SEEK_HOLE and readahead hints. node:fs gives positional reads and writes
 * on a real OS descriptor; what node:fs lacks (fallocate, lseek, posix_fadvise, and I/O off the
 * event loop) comes from libc through Deno's FFI when the process may use it, and is reported as
 * missing otherwise, so the device above advertises only what really works.
 */
import * as fs from "node:fs";
import { BlockError, type BlockErrorCode } from "./contract.ts";
import type { MediaIo } from "./media.ts";
import { hold } from "../../util/buffer_lease.ts";

/**
 * How reads and writes run. "sync": node:fs positional calls on the event loop thread — the
 * fastest when the data is in the page cache (about 1–3 µs per 4 KiB). "threaded": libc
 * pread/pwrite on Deno's blocking thread pool, so a slow disk never stalls the event loop (about
 * 6–8 µs per 4 KiB at depth 32, 27 µs one at a time).
 */
export type IoMode = "sync" | "threaded";

const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
const SEEK_END = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const POSIX_FADV_WILLNEED = 3;
const ENXIO = 6;

const LIBC_SYMBOLS = {
  pread64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  pwrite64: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true },
  fdatasync: { parameters: ["i32"], result: "i32", nonblocking: true },
  fallocate64: { parameters: ["i32", "i32", "i64", "i64"], result: "i32", nonblocking: true },
  fallocate64Now: {
    name: "fallocate64",
    parameters: ["i32", "i32", "i64", "i64"],
    result: "i32",
  },
  lseek64: { parameters: ["i32", "i64", "i32"], result: "i64" },
  posix_fadvise64: { parameters: ["i32", "i64", "i64", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];
let libc: Libc | null | undefined;

/** libc through FFI, or null when this process may not load it (no --allow-ffi, not Linux). */
export function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    libc = Deno.build.os === "linux" ? Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols : null;
  } catch {
    libc = null;
  }
  return libc;
}

/** errno of the last failed synchronous FFI call on this thread. */
function errno(lib: Libc): number {
  const at = lib.__errno_location();
  return at ? new Deno.UnsafePointerView(at).getInt32() : 0;
}

/**
 * What the file device needs of its raw media: positional I/O (synchronous for "sync" mode),
 * sync, and the fallocate/lseek extras with what the media says it can do. {@link RawFile} is
 * the real one; a simulation passes a simulated disk that loses what was not synced on a crash.
 */
export interface RawMedia extends MediaIo {
  readonly path: string;
  readonly io: IoMode;
  readonly isBlockDevice: boolean;
  readonly canPunch: boolean;
  readonly canZeroRange: boolean;
  readonly fallocateAlign: number;
  readonly canSeekData: boolean;
  truncate(size: number): void;
  readNow(buf: Uint8Array, position: number): void;
  writeNow(buf: Uint8Array, position: number): void;
  punchHole(position: number, length: number): Promise<boolean>;
  zeroRange(position: number, length: number): Promise<boolean>;
  seekData(position: number, end: number): number;
  seekHole(position: number, end: number): number;
  willNeed(position: number, length: number): void;
  close(): void;
}

export interface RawFileOptions {
  readonly path: string;
  readonly readOnly: boolean;
  /** Create the file if missing (read-write only). */
  readonly create?: boolean;
  readonly io?: IoMode;
}

/** One open file or block device; every position is absolute. */
export class RawFile implements RawMedia {
  readonly path: string;
  readonly io: IoMode;
  readonly isBlockDevice: boolean;
  readonly #fd: number;
  readonly #lib: Libc | null;
  #size: number;
  #closed = false;
  /** Set once the filesystem answers that it cannot punch holes / zero ranges. */
  #punch: boolean;
  #zeroRange: boolean;

  private constructor(path: string, fd: number, io: IoMode, lib: Libc | null) {
    this.path = path;
    this.#fd = fd;
    this.io = io;
    this.#lib = lib;
    const stat = fs.fstatSync(fd);
    this.isBlockDevice = stat.isBlockDevice();
    this.#size = this.isBlockDevice && lib ? Number(lib.lseek64(fd, 0n, SEEK_END)) : stat.size;
    this.#punch = lib !== null;
    this.#zeroRange = lib !== null;
  }

  static open(options: RawFileOptions): RawFile {
    const io = options.io ?? "sync";
    const lib = loadLibc();
    if (io === "threaded" && !lib) {
      throw new Error("threaded I/O needs libc through FFI: run with --allow-ffi on Linux");
    }
    const { O_RDONLY, O_RDWR, O_CREAT } = fs.constants;
    const flags = options.readOnly ? O_RDONLY : O_RDWR | (options.create ? O_CREAT : 0);
    const fd = fs.openSync(options.path, flags, 0o644);
    try {
      return new RawFile(options.path, fd, io, lib);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  size(): number {
    return this.#size;
  }

  /** True while hole punching has not been refused by the filesystem. */
  get canPunch(): boolean {
    return this.#punch;
  }

  get canZeroRange(): boolean {
    return this.#zeroRange;
  }

  /**
   * Granularity fallocate needs here: block devices take only whole logical blocks (4 KiB covers
   * every logical block size Linux allows); files take any range.
   */
  get fallocateAlign(): number {
    return this.isBlockDevice ? 4096 : 1;
  }

  get canSeekData(): boolean {
    return this.#lib !== null;
  }

  /** Sets the size of a regular file (sparse when growing). */
  truncate(size: number): void {
    if (this.isBlockDevice) throw new Error(`${this.path} is a block device; it cannot be resized`);
    fs.ftruncateSync(this.#fd, size);
    this.#size = size;
  }

  /** Reads all of `buf` on this thread ("sync" mode only); zeros past the end of the file. */
  readNow(buf: Uint8Array, position: number): void {
    this.#open();
    let done = 0;
    try {
      while (done < buf.length) {
        const n = fs.readSync(this.#fd, buf, done, buf.length - done, position + done);
        if (n === 0) {
          buf.fill(0, done);
          return;
        }
        done += n;
      }
    } catch (e) {
      throw fromNode(e, "read", this.path);
    }
  }

  /** Writes all of `buf` on this thread ("sync" mode only). */
  writeNow(buf: Uint8Array, position: number): void {
    this.#open();
    let done = 0;
    try {
      while (done < buf.length) {
        done += fs.writeSync(this.#fd, buf, done, buf.length - done, position + done);
      }
    } catch (e) {
      throw fromNode(e, "write", this.path);
    }
  }

  /**
   * Reads all of `buf`. Off this thread the buffer is held (util/buffer_lease.ts) until the
   * kernel is done with it, even when a caller above gave up waiting.
   */
  async pread(buf: Uint8Array, position: number): Promise<void> {
    if (this.io === "sync") return this.readNow(buf, position);
    const release = hold(buf);
    try {
      let done = 0;
      while (done < buf.length) {
        const n = await this.#readSome(buf.subarray(done), position + done);
        if (n === 0) {
          buf.fill(0, done); // past the end of the file
          return;
        }
        done += n;
      }
    } finally {
      release();
    }
  }

  /** Writes all of `buf`, holding it while off this thread as {@link pread} does. */
  async pwrite(buf: Uint8Array, position: number): Promise<void> {
    if (this.io === "sync") return this.writeNow(buf, position);
    const release = hold(buf);
    try {
      let done = 0;
      while (done < buf.length) done += await this.#writeSome(buf.subarray(done), position + done);
    } finally {
      release();
    }
  }

  async sync(): Promise<void> {
    this.#open();
    if (this.#lib) {
      if (await this.#lib.fdatasync(this.#fd) === 0) return;
      throw ioError("EIO", `fdatasync of ${this.path} failed`);
    }
    await new Promise<void>((resolve, reject) =>
      fs.fdatasync(this.#fd, (e) => e ? reject(fromNode(e, "fdatasync", this.path)) : resolve())
    );
  }

  /** Deallocates a range so it reads as zeros; false when the filesystem cannot. */
  punchHole(position: number, length: number): Promise<boolean> {
    if (!this.#punch) return Promise.resolve(false);
    return this.#fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, position, length, () => {
      this.#punch = false;
    });
  }

  /** Zeros a range keeping it allocated; false when the filesystem cannot. */
  zeroRange(position: number, length: number): Promise<boolean> {
    if (!this.#zeroRange) return Promise.resolve(false);
    return this.#fallocate(FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, position, length, () => {
      this.#zeroRange = false;
    });
  }

  /** Next position at or after `position` holding data (or `end` if none before it). */
  seekData(position: number, end: number): number {
    return this.#seek(position, SEEK_DATA, end);
  }

  /** Next position at or after `position` starting a hole (the end of the file counts). */
  seekHole(position: number, end: number): number {
    return this.#seek(position, SEEK_HOLE, end);
  }

  /** Asks the kernel to read a range ahead; a hint, so failures are ignored. */
  willNeed(position: number, length: number): void {
    this.#open();
    this.#lib?.posix_fadvise64(this.#fd, BigInt(position), BigInt(length), POSIX_FADV_WILLNEED);
  }

  /** Closes the descriptor; the caller makes sure nothing is in flight. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    fs.closeSync(this.#fd);
  }

  async #readSome(buf: Uint8Array, position: number): Promise<number> {
    this.#open();
    void buf.buffer; // moves a small on-heap array off the heap before another thread sees it
    const n = Number(await this.#lib!.pread64(this.#fd, buf, BigInt(buf.length), BigInt(position)));
    if (n < 0) throw ioError("EIO", `read of ${buf.length} bytes at ${position} failed`);
    return n;
  }

  async #writeSome(buf: Uint8Array, position: number): Promise<number> {
    this.#open();
    void buf.buffer;
    const n = Number(
      await this.#lib!.pwrite64(this.#fd, buf, BigInt(buf.length), BigInt(position)),
    );
    if (n < 0) {
      // errno lives on the worker thread; retry here to learn it (ENOSPC vs EIO).
      try {
        return fs.writeSync(this.#fd, buf, 0, buf.length, position);
      } catch (e) {
        throw fromNode(e, "write", this.path);
      }
    }
    return n;
  }

  async #fallocate(
    mode: number,
    position: number,
    length: number,
    unsupported: () => void,
  ): Promise<boolean> {
    this.#open();
    const lib = this.#lib!;
    if (await lib.fallocate64(this.#fd, mode, BigInt(position), BigInt(length)) === 0) return true;
    // The threaded call's errno is lost; ask again on this thread to learn why it failed.
    if (lib.fallocate64Now(this.#fd, mode, BigInt(position), BigInt(length)) === 0) return true;
    const code = errno(lib);
    if (code === 95 /* EOPNOTSUPP */ || code === 19 /* ENODEV */) {
      unsupported();
      return false;
    }
    // EINVAL: this range cannot (a misaligned piece of a block device); the caller falls back.
    if (code === 22) return false;
    throw ioError(
      code === 28 ? "ENOSPC" : "EIO",
      `fallocate on ${this.path} failed (errno ${code})`,
    );
  }

  #seek(position: number, whence: number, end: number): number {
    this.#open();
    const lib = this.#lib;
    if (!lib) return whence === SEEK_DATA ? position : end;
    const at = Number(lib.lseek64(this.#fd, BigInt(position), whence));
    if (at >= 0) return Math.min(at, end);
    // ENXIO: no data past position. Anything else: the device cannot tell, so call it data.
    if (whence === SEEK_DATA) return errno(lib) === ENXIO ? end : position;
    return end;
  }

  #open(): void {
    if (this.#closed) throw new BlockError("ESHUTDOWN", `${this.path} is closed`);
  }
}

function ioError(code: BlockErrorCode, message: string): BlockError {
  return new BlockError(code, message);
}

/** Maps a node:fs error onto the block error a client understands. */
function fromNode(e: unknown, what: string, path: string): BlockError {
  const code = (e as { code?: string }).code;
  const mapped: BlockErrorCode = code === "ENOSPC" || code === "EDQUOT"
    ? "ENOSPC"
    : code === "EBADF"
    ? "ESHUTDOWN"
    : code === "EROFS" || code === "EPERM" || code === "EACCES"
    ? "EPERM"
    : "EIO";
  return new BlockError(mapped, `${what} on ${path} failed: ${(e as Error).message}`);
}
