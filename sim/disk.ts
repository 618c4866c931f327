/**
 * The simulated disk under a node's file media: writes land in a volatile cache and become
 * durable only with a sync; a crash keeps a random subset of what was not synced (each write
 * whole, except metadata writes, which may tear at a 512-byte sector), and the media can be
 * replaced by an empty one or hang. `FileBlockDevice` runs on it unchanged through `RawMedia`.
 */
import { BlockError } from "../actors/block/contract.ts";
import type { IoMode, RawMedia } from "../actors/block/raw_file.ts";
import type { ProcessClock } from "./scheduler.ts";
import type { Rng } from "./rng.ts";

const PAGE = 4096;
const SECTOR = 512;

/** How one disk behaves, drawn per seed. */
export interface DiskProfile {
  /** The file device's I/O mode: "sync" reads and writes at once, "threaded" awaits them. */
  readonly io: IoMode;
  /** Latency of each awaited operation, plus up to `jitterMs` more. */
  readonly latencyMs: number;
  readonly jitterMs: number;
  /** Probability that a write not yet synced survives a crash. */
  readonly keep: number;
  /** Metadata writes (below `metaBytes`) cut at a crash may land in part. */
  readonly tear: boolean;
}

interface Pending {
  readonly pos: number;
  readonly data: Uint8Array;
}

export interface DiskStats {
  writes: number;
  syncs: number;
  /** Writes dropped by crashes. */
  lost: number;
  /** Writes that landed torn. */
  torn: number;
}

/** A disk: its durable image, what a read sees now, and the writes not yet synced. */
export class SimDisk {
  #size = 0;
  #current = new Map<number, Uint8Array>();
  #durable = new Map<number, Uint8Array>();
  #pending: Pending[] = [];
  /** Absolute index of `#pending[0]`, so a sync knows which writes it covers. */
  #base = 0;
  #hung = false;
  #file: SimRawFile | undefined;
  readonly stats: DiskStats = { writes: 0, syncs: 0, lost: 0, torn: 0 };

  constructor(
    readonly name: string,
    readonly profile: DiskProfile,
    readonly random: Rng,
    /** Bytes at the start that hold metadata (headers, bitmap): where tearing applies. */
    readonly metaBytes: number,
  ) {}

  get size(): number {
    return this.#size;
  }

  get hung(): boolean {
    return this.#hung;
  }

  /** Opens the disk for a new process incarnation; an earlier handle is dead from now on. */
  open(clock: ProcessClock): SimRawFile {
    this.#file?.kill();
    this.#file = new SimRawFile(this, clock, this.profile.io);
    return this.#file;
  }

  /** Every operation waits until {@link release}; none fails. */
  hang(): void {
    this.#hung = true;
  }

  release(): void {
    this.#hung = false;
    this.#file?.wake();
  }

  /**
   * Power is lost: the open handle dies, each write not synced survives with the profile's
   * probability (metadata ones possibly torn), and reads see the durable image.
   */
  crash(): void {
    this.#file?.kill();
    this.#file = undefined;
    for (const p of this.#pending) {
      if (!this.random.chance(this.profile.keep)) {
        this.stats.lost++;
        continue;
      }
      if (this.profile.tear && p.pos < this.metaBytes && this.random.chance(0.5)) {
        const sectors = Math.ceil(p.data.length / SECTOR);
        const kept = this.random.below(sectors);
        this.stats.torn++;
        this.#put(this.#durable, p.pos, p.data.subarray(0, kept * SECTOR));
      } else {
        this.#put(this.#durable, p.pos, p.data);
      }
    }
    this.#pending = [];
    this.#base = 0;
    this.#current = copyPages(this.#durable);
  }

  /** New, empty media (the old handle dies). */
  replace(): void {
    this.#file?.kill();
    this.#file = undefined;
    this.#size = 0;
    this.#current.clear();
    this.#durable.clear();
    this.#pending = [];
    this.#base = 0;
  }

  /** What a read sees now (for checks that look beneath the file device). */
  peek(pos: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.read(out, pos);
    return out;
  }

  // ---- used by the handle ----

  read(buf: Uint8Array, pos: number): void {
    let done = 0;
    while (done < buf.length) {
      const at = pos + done;
      const page = Math.floor(at / PAGE);
      const within = at - page * PAGE;
      const n = Math.min(PAGE - within, buf.length - done);
      const data = at < this.#size ? this.#current.get(page) : undefined;
      if (data === undefined) buf.fill(0, done, done + n);
      else buf.set(data.subarray(within, within + n), done);
      done += n;
    }
    // Bytes past the end read as zeros, as from a file.
    if (pos + buf.length > this.#size) buf.fill(0, Math.max(0, this.#size - pos));
  }

  write(buf: Uint8Array, pos: number): void {
    const data = buf.slice();
    this.#put(this.#current, pos, data);
    this.#pending.push({ pos, data });
    this.stats.writes++;
    if (pos + buf.length > this.#size) this.#size = pos + buf.length;
  }

  /** The index just past the last write so far: a sync started now covers those before it. */
  get mark(): number {
    return this.#base + this.#pending.length;
  }

  /** Makes the writes before `mark` durable. */
  syncTo(mark: number): void {
    this.stats.syncs++;
    const count = Math.min(this.#pending.length, mark - this.#base);
    if (count <= 0) return;
    for (let i = 0; i < count; i++) {
      const p = this.#pending[i]!;
      this.#put(this.#durable, p.pos, p.data);
    }
    this.#pending.splice(0, count);
    this.#base += count;
  }

  truncate(size: number): void {
    const keepPages = Math.ceil(size / PAGE);
    for (const pages of [this.#current, this.#durable]) {
      for (const page of [...pages.keys()]) {
        if (page >= keepPages) pages.delete(page);
        else if ((page + 1) * PAGE > size) pages.get(page)!.fill(0, size - page * PAGE);
      }
    }
    this.#pending = this.#pending.filter((p) => p.pos < size);
    this.#base = 0;
    this.#size = size;
  }

  #put(pages: Map<number, Uint8Array>, pos: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const at = pos + done;
      const page = Math.floor(at / PAGE);
      const within = at - page * PAGE;
      const n = Math.min(PAGE - within, data.length - done);
      let target = pages.get(page);
      if (target === undefined) {
        target = new Uint8Array(PAGE);
        pages.set(page, target);
      }
      target.set(data.subarray(done, done + n), within);
      done += n;
    }
  }
}

function copyPages(pages: Map<number, Uint8Array>): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  for (const [page, data] of pages) out.set(page, data.slice());
  return out;
}

/** One process incarnation's open handle on a disk: the file device's raw media. */
export class SimRawFile implements RawMedia {
  readonly path: string;
  readonly isBlockDevice = false;
  readonly canPunch = true;
  readonly canZeroRange = true;
  readonly fallocateAlign = 1;
  readonly canSeekData = false;
  #dead = false;
  #closed = false;
  #waiting: (() => void)[] = [];

  constructor(readonly disk: SimDisk, readonly clock: ProcessClock, readonly io: IoMode) {
    this.path = `sim://${disk.name}`;
  }

  /** The process died (or the disk was replaced): nothing it started completes. */
  kill(): void {
    this.#dead = true;
    this.#waiting = [];
  }

  wake(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) w();
  }

  size(): number {
    return this.disk.size;
  }

  truncate(size: number): void {
    this.#check();
    this.disk.truncate(size);
  }

  readNow(buf: Uint8Array, position: number): void {
    this.#check();
    this.disk.read(buf, position);
  }

  writeNow(buf: Uint8Array, position: number): void {
    this.#check();
    this.disk.write(buf, position);
  }

  async pread(buf: Uint8Array, position: number): Promise<void> {
    await this.#io();
    this.disk.read(buf, position);
  }

  async pwrite(buf: Uint8Array, position: number): Promise<void> {
    await this.#io();
    this.disk.write(buf, position);
  }

  async sync(): Promise<void> {
    const mark = this.disk.mark;
    await this.#io();
    this.disk.syncTo(mark);
  }

  async punchHole(position: number, length: number): Promise<boolean> {
    await this.#io();
    this.disk.write(new Uint8Array(length), position);
    return true;
  }

  async zeroRange(position: number, length: number): Promise<boolean> {
    return await this.punchHole(position, length);
  }

  seekData(position: number): number {
    return position;
  }

  seekHole(_position: number, end: number): number {
    return end;
  }

  willNeed(): void {}

  close(): void {
    this.#closed = true;
  }

  #check(): void {
    if (this.#closed || this.#dead) {
      throw new BlockError("ESHUTDOWN", `${this.path} is closed`);
    }
  }

  /** Waits out a hang and the latency; never completes for a dead handle. */
  async #io(): Promise<void> {
    this.#check();
    while (this.disk.hung) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    const { latencyMs, jitterMs } = this.disk.profile;
    const ms = latencyMs + (jitterMs > 0 ? this.disk.random.next() * jitterMs : 0);
    if (ms > 0) await new Promise<void>((resolve) => this.clock.setTimeout(resolve, ms));
    if (this.#dead) await new Promise<void>(() => {});
    this.#check();
  }
}
