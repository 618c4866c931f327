/**
 * A storage node's local media: a block device on a file or a raw block device, behind the
 * media.ts metadata region. Offsets are within the data area. Reads and writes are positional,
 * so any number may be in flight; flush and FUA are fdatasync, with concurrent syncs coalesced
 * into one; trim and zero punch holes where the filesystem can, extents come from
 * SEEK_DATA/SEEK_HOLE. Opening validates the metadata and refuses media of another storage,
 * and media another process has open (media_lock.ts): the lock is taken before anything is read
 * or written, and held until close.
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type MediaDevice,
  type MediaPatch,
  type MediaState,
  type ZeroOptions,
} from "./contract.ts";
import { ZERO_BUFFER } from "./guard.ts";
import {
  DEFAULT_CHUNK,
  digestChunks,
  formatMedia,
  type Generations,
  layoutFor,
  MEDIA_FLAG_BLANK,
  type MediaChanges,
  MediaError,
  type MediaMeta,
  openMedia,
  readBitmap,
  updateMedia,
  writeBitmap,
} from "./media.ts";
import { lockMedia, type MediaLock } from "./media_lock.ts";
import { checkExpectedGeneration, type OwnerGrant } from "./owner_grant.ts";
import { type IoMode, RawFile, type RawMedia } from "./raw_file.ts";
import type { Random } from "../../util/random.ts";

export const FILE_MAX_BLOCK = 32 * 1024 * 1024;

export interface FileCreateOptions {
  readonly path: string;
  /** Bytes of data (the file is this plus the metadata region). */
  readonly size: number;
  readonly chunkSize?: number;
  readonly leg?: number;
  /** Joins an existing storage; a fresh one gets a new random id. */
  readonly storageId?: string;
  readonly generations?: Generations;
  readonly io?: IoMode;
  readonly random?: Random;
  /** Format even when the media already holds a dst storage (its data is lost). */
  readonly overwrite?: boolean;
  /** Media already open to use instead of opening `path` (a simulated disk). */
  readonly raw?: RawMedia;
}

export interface FileOpenOptions {
  readonly path: string;
  readonly readOnly?: boolean;
  /** Refuse media that belongs to another storage. */
  readonly expectStorageId?: string;
  readonly expectSize?: number;
  readonly expectLeg?: number;
  readonly io?: IoMode;
  /** Media already open to use instead of opening `path` (a simulated disk). */
  readonly raw?: RawMedia;
}

export class FileBlockDevice implements BlockDevice, MediaDevice {
  readonly #file: RawMedia;
  readonly #lock: MediaLock;
  #meta: MediaMeta;
  #info: BlockInfo;
  #closed = false;
  #inFlight = 0;
  #drained: (() => void) | undefined;
  /** The fdatasync running now, and the one that will start after it (shared by all callers). */
  #syncRunning: Promise<void> | undefined;
  #syncNext: Promise<void> | undefined;
  /** Serializes metadata updates so copies alternate strictly. */
  #metaChain: Promise<unknown> = Promise.resolve();

  private constructor(file: RawMedia, lock: MediaLock, meta: MediaMeta, readOnly: boolean) {
    this.#file = file;
    this.#lock = lock;
    this.#meta = meta;
    this.#info = this.#makeInfo(readOnly);
  }

  /** Formats `path` (created if missing) as a new node holding `size` bytes of zeros. */
  static async create(options: FileCreateOptions): Promise<FileBlockDevice> {
    const file = options.raw ?? RawFile.open({
      path: options.path,
      readOnly: false,
      create: true,
      ...(options.io ? { io: options.io } : {}),
    });
    let lock: MediaLock | undefined;
    try {
      lock = options.raw ? unlocked(options.path) : lockMedia(options.path, true);
      const layout = layoutFor(options.size, options.chunkSize ?? DEFAULT_CHUNK);
      if (!options.overwrite) {
        const existing = await openMedia(file).catch(() => undefined);
        if (existing) {
          throw new MediaError(
            "exists",
            `${options.path} already holds leg ${existing.leg} of storage ${existing.storageId}; ` +
              `open it, or create with overwrite to discard it`,
          );
        }
      }
      if (!file.isBlockDevice) {
        file.truncate(0); // drop whatever an earlier storage left: new media reads as zeros
        file.truncate(layout.dataOffset + options.size);
      }
      const meta = await formatMedia(file, {
        dataSize: options.size,
        ...pick(options, ["chunkSize", "leg", "storageId", "generations", "random"]),
        // A file truncated to nothing and grown again reads as zeros; a block device may not.
        blank: !file.isBlockDevice,
      });
      const device = new FileBlockDevice(file, lock, meta, false);
      await device.#probeHoles();
      return device;
    } catch (e) {
      file.close();
      lock?.release();
      throw e;
    }
  }

  /** Opens formatted media; throws MediaError when it is unformatted, damaged or foreign. */
  static async open(options: FileOpenOptions): Promise<FileBlockDevice> {
    const readOnly = options.readOnly ?? false;
    const file = options.raw ?? RawFile.open({
      path: options.path,
      readOnly,
      ...(options.io ? { io: options.io } : {}),
    });
    let lock: MediaLock | undefined;
    try {
      lock = options.raw ? unlocked(options.path) : lockMedia(options.path, !readOnly);
      const meta = await openMedia(file, {
        ...(options.expectStorageId !== undefined ? { storageId: options.expectStorageId } : {}),
        ...(options.expectSize !== undefined ? { dataSize: options.expectSize } : {}),
        ...(options.expectLeg !== undefined ? { leg: options.expectLeg } : {}),
      });
      const device = new FileBlockDevice(file, lock, meta, readOnly);
      if (!readOnly) await device.#probeHoles();
      return device;
    } catch (e) {
      file.close();
      lock?.release();
      throw e;
    }
  }

  info(): BlockInfo {
    return this.#info;
  }

  /** The media metadata as last written. */
  get meta(): MediaMeta {
    return this.#meta;
  }

  get path(): string {
    return this.#file.path;
  }

  /** Durably updates the metadata (leg, generations, flags). */
  updateMeta(changes: MediaChanges): Promise<MediaMeta> {
    return this.#updateMetaWith(() => changes);
  }

  /**
   * Updates the metadata with changes made from it as it is when the update runs. `tracked`:
   * counted as a request in flight (false when the caller already is one).
   */
  async #updateMetaWith(
    changes: (meta: MediaMeta) => MediaChanges,
    tracked = true,
  ): Promise<MediaMeta> {
    this.#writable("update metadata");
    const update = async () => {
      this.#meta = await updateMedia(this.#file, this.#meta, changes(this.#meta));
      return this.#meta;
    };
    const next = this.#metaChain.then(() => tracked ? this.#tracked(update) : update());
    this.#metaChain = next.catch(() => {});
    return await next;
  }

  /**
   * Before the first write to blank media's data, it stops being blank, durably (trim and zero
   * leave zeros where there were zeros: blank stays true).
   */
  #unblanking: Promise<unknown> | undefined;
  #touch(): Promise<unknown> {
    return this.#unblanking ??= this.#updateMetaWith(
      (m) => ({ flags: m.flags & ~MEDIA_FLAG_BLANK }),
      false,
    );
  }

  /** The write-intent bitmap as stored. */
  async readBitmap(): Promise<Uint8Array> {
    return await this.#tracked(() => readBitmap(this.#file, this.#meta));
  }

  /** Durably stores bytes [from, to) of `bitmap` (page-wise), returning once synced. */
  async writeBitmap(bitmap: Uint8Array, from?: number, to?: number): Promise<void> {
    this.#writable("write the bitmap");
    return await this.#tracked(() => writeBitmap(this.#file, this.#meta, bitmap, from, to));
  }

  /** The media state a mirror reads (MediaDevice). */
  /**
   * The media state a mirror reads (MediaDevice), once the updates asked for before it landed:
   * an update still queued (a slow disk) must not land after a reader took the older state.
   */
  async media(): Promise<MediaState> {
    await this.#metaChain;
    const m = this.#meta;
    return {
      storageId: m.storageId,
      generations: m.generations,
      flags: m.flags,
      bitmapBytes: m.bitmapBytes,
      outdated: m.outdated,
    };
  }

  /** Changes the media state; `expectCurrent` is checked in the same turn as the update. */
  async updateMedia(patch: MediaPatch): Promise<MediaState> {
    const { expectCurrent: _, ...changes } = patch;
    await this.#updateMetaWith((m) => {
      checkExpectedGeneration(patch, m.generations.current);
      return changes;
    });
    return await this.media();
  }

  /** The owner grant kept in the header (GrantStore). */
  ownerGrant(): OwnerGrant {
    const m = this.#meta;
    return { epoch: m.ownerEpoch, owner: m.owner, label: m.ownerLabel };
  }

  /** Keeps `grant` durably in the header before resolving (GrantStore). */
  async storeOwnerGrant(grant: OwnerGrant): Promise<void> {
    await this.updateMeta({ ownerEpoch: grant.epoch, owner: grant.owner, ownerLabel: grant.label });
  }

  /** Durably stores `bytes` at byte `at` of the bitmap region (MediaDevice). */
  async storeBitmap(at: number, bytes: Uint8Array): Promise<void> {
    this.#writable("write the bitmap");
    const meta = this.#meta;
    if (!Number.isSafeInteger(at) || at < 0 || at + bytes.length > meta.bitmapBytes) {
      throw new BlockError("EINVAL", `bitmap range ${at}+${bytes.length} is outside the region`);
    }
    return await this.#tracked(async () => {
      await this.#file.pwrite(bytes, meta.bitmapOffset + at);
      await this.#sync();
    });
  }

  async digest(offset: number, length: number, chunk: number): Promise<Uint8Array> {
    this.#range(offset, length);
    return await digestChunks((o, l, into) => this.read(o, l, into), offset, length, chunk);
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#range(offset, length);
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    if (this.#file.io === "sync") {
      // Done before this call returns, so there is nothing in flight for close() to wait for.
      this.#file.readNow(out, this.#meta.dataOffset + offset);
      return out;
    }
    return await this.#tracked(async () => {
      await this.#file.pread(out, this.#meta.dataOffset + offset);
      return out;
    });
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.#range(offset, data.length);
    this.#writable("write");
    if ((this.#meta.flags & MEDIA_FLAG_BLANK) !== 0) {
      return await this.#tracked(async () => {
        await this.#touch();
        await this.#file.pwrite(data, this.#meta.dataOffset + offset);
        if (fua) await this.#sync();
      });
    }
    if (this.#file.io === "sync") {
      this.#file.writeNow(data, this.#meta.dataOffset + offset);
      if (fua) await this.#tracked(() => this.#sync());
      return;
    }
    return await this.#tracked(async () => {
      await this.#file.pwrite(data, this.#meta.dataOffset + offset);
      if (fua) await this.#sync();
    });
  }

  async flush(): Promise<void> {
    this.#range(0, 0);
    return await this.#tracked(() => this.#sync());
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.#range(offset, length);
    this.#writable("trim");
    return await this.#tracked(async () => {
      // Advisory: what cannot be punched (misaligned edges, no support) simply keeps its data.
      const [head, middle] = this.#aligned(this.#meta.dataOffset + offset, length);
      if (middle > 0) await this.#file.punchHole(head, middle);
      if (fua) await this.#sync();
    });
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.#range(offset, length);
    this.#writable("zero");
    return await this.#tracked(async () => {
      const at = this.#meta.dataOffset + offset;
      const [start, middle] = this.#aligned(at, length);
      const file = this.#file;
      const done = middle === 0 ||
        (options.mayTrim && await file.punchHole(start, middle)) ||
        await file.zeroRange(start, middle) || await file.punchHole(start, middle);
      if (!done && options.fastZero) {
        throw new BlockError("ENOTSUP", "the media cannot zero this range fast");
      }
      // Misaligned edges (block devices only) and media that cannot zero get written zeros.
      if (done) {
        await this.#writeZeros(at, start - at);
        await this.#writeZeros(start + middle, at + length - start - middle);
      } else await this.#writeZeros(at, length);
      if (options.fua) await this.#sync();
    });
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.#range(offset, length);
    return await this.#tracked(() => {
      const base = this.#meta.dataOffset;
      const end = base + offset + length;
      const extents: Extent[] = [];
      let at = base + offset;
      while (at < end) {
        const data = this.#file.seekData(at, end);
        if (data > at) {
          extents.push({ length: data - at, hole: true, zero: true });
          at = data;
          continue;
        }
        const hole = this.#file.seekHole(at, end);
        const stop = hole > at ? hole : end;
        extents.push({ length: stop - at, hole: false, zero: false });
        at = stop;
      }
      return Promise.resolve(extents);
    });
  }

  async cache(offset: number, length: number): Promise<void> {
    this.#range(offset, length);
    return await this.#tracked(() => {
      if (length > 0) this.#file.willNeed(this.#meta.dataOffset + offset, length);
      return Promise.resolve();
    });
  }

  /** Waits for requests in flight, then closes the file; later requests fail with ESHUTDOWN. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#drained = resolve);
    this.#file.close();
    this.#lock.release();
  }

  /** The part of [at, at+length) fallocate can take here: [start, length of it]. */
  #aligned(at: number, length: number): [number, number] {
    const align = this.#file.fallocateAlign;
    const start = Math.ceil(at / align) * align;
    const end = Math.floor((at + length) / align) * align;
    return end > start ? [start, end - start] : [at, 0];
  }

  async #writeZeros(at: number, length: number): Promise<void> {
    for (let n = 0; n < length; n += ZERO_BUFFER.length) {
      await this.#file.pwrite(
        ZERO_BUFFER.subarray(0, Math.min(ZERO_BUFFER.length, length - n)),
        at + n,
      );
    }
  }

  /** Runs one request, counted so close() can wait for it; errors become rejections. */
  async #tracked<T>(run: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await run();
    } finally {
      if (--this.#inFlight === 0 && this.#drained) this.#drained();
    }
  }

  /**
   * fdatasync shared by everyone waiting: a caller arriving while a sync runs waits for the
   * next one (its write may have missed the running one), and all such callers share it.
   */
  #sync(): Promise<void> {
    if (!this.#syncRunning) return this.#startSync();
    this.#syncNext ??= this.#syncRunning.catch(() => {}).then(() => {
      this.#syncNext = undefined;
      return this.#startSync();
    });
    return this.#syncNext;
  }

  #startSync(): Promise<void> {
    const running = this.#file.sync().finally(() => {
      if (this.#syncRunning === running) this.#syncRunning = undefined;
    });
    this.#syncRunning = running;
    return running;
  }

  /** Learns whether the filesystem punches holes, on the unused tail of the metadata region. */
  async #probeHoles(): Promise<void> {
    const meta = this.#meta;
    const padStart = meta.bitmapOffset + meta.bitmapBytes;
    if (padStart < meta.dataOffset) {
      await this.#file.punchHole(padStart, meta.dataOffset - padStart);
    }
    this.#info = this.#makeInfo(this.#info.readOnly);
  }

  #makeInfo(readOnly: boolean): BlockInfo {
    const punch = this.#file.canPunch && !readOnly;
    return {
      size: this.#meta.dataSize,
      minBlock: 1,
      preferredBlock: 4096,
      maxBlock: FILE_MAX_BLOCK,
      readOnly,
      canFlush: true,
      canFua: true,
      canTrim: punch,
      canZero: !readOnly,
      canFastZero: punch || (this.#file.canZeroRange && !readOnly),
      canExtents: this.#file.canSeekData,
      canCache: true,
      canMultiConn: true,
    };
  }

  #range(offset: number, length: number): void {
    if (this.#closed) throw new BlockError("ESHUTDOWN", `${this.#file.path} is closed`);
    const size = this.#meta.dataSize;
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset > size || length > size - offset
    ) {
      throw new BlockError("EINVAL", `range ${offset}+${length} is outside the device (${size})`);
    }
  }

  #writable(what: string): void {
    if (this.#info.readOnly) {
      throw new BlockError("EPERM", `${what}: ${this.#file.path} is open read-only`);
    }
  }
}

function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Partial<T> {
  const out: Partial<T> = {};
  for (const key of keys) if (from[key] !== undefined) out[key] = from[key];
  return out;
}

/** Media handed in already open (the simulator's disks) come without an OS lock to take. */
function unlocked(path: string): MediaLock {
  return { path, release: () => {} };
}
