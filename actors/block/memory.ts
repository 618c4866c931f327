/**
 * A sparse in-memory block device: chunks are allocated on first write, so a large export costs
 * only what is written. Used for tests, benchmarks and `dst export --memory`.
 */
import {
  type BlockDevice,
  BlockError,
  type BlockInfo,
  type Extent,
  type MediaDevice,
  type MediaPatch,
  type MediaState,
} from "./contract.ts";
import {
  DEFAULT_CHUNK,
  digestChunks,
  layoutFor,
  MEDIA_FLAG_BLANK,
  NO_GENERATION,
} from "./media.ts";
import { checkExpectedGeneration, NO_GRANT, type OwnerGrant } from "./owner_grant.ts";

/** Allocation granularity; also the extent granularity reported by {@link MemoryBlockDevice}. */
export const MEMORY_CHUNK = 64 * 1024;

export interface MemoryOptions {
  readonly size: number;
  readonly readOnly?: boolean;
  /** The storage id its (volatile) media state starts with. */
  readonly storageId?: string;
}

export class MemoryBlockDevice implements BlockDevice, MediaDevice {
  readonly #chunks = new Map<number, Uint8Array>();
  /** Chunks are cut from large slabs: a few big buffers instead of one small one per chunk. */
  readonly #slabs: ChunkSlabs;
  readonly #info: BlockInfo;
  #closed = false;
  /** Media state kept in memory: lost with the device, as its data is. */
  #media: MediaState;
  #bitmap: Uint8Array;
  #grant: OwnerGrant = NO_GRANT;

  constructor(options: MemoryOptions) {
    if (!Number.isSafeInteger(options.size) || options.size < 0) {
      throw new RangeError(`memory size must be a whole number of bytes, got ${options.size}`);
    }
    this.#slabs = new ChunkSlabs(options.size);
    this.#info = {
      size: options.size,
      minBlock: 1,
      preferredBlock: 4096,
      maxBlock: 32 * 1024 * 1024,
      readOnly: options.readOnly ?? false,
      canFlush: true,
      canFua: true,
      canTrim: true,
      canZero: true,
      canFastZero: true,
      canExtents: true,
      canCache: true,
      canMultiConn: true,
    };
    const { bitmapBytes } = layoutFor(options.size, DEFAULT_CHUNK);
    this.#bitmap = new Uint8Array(bitmapBytes);
    this.#media = {
      storageId: options.storageId,
      generations: { current: NO_GENERATION, bitmap: NO_GENERATION, history: [] },
      flags: options.readOnly ? 0 : MEDIA_FLAG_BLANK,
      bitmapBytes,
      outdated: [],
    };
  }

  media(): Promise<MediaState> {
    return Promise.resolve(this.#media);
  }

  async updateMedia(patch: MediaPatch): Promise<MediaState> {
    this.#check(0, 0);
    checkExpectedGeneration(patch, this.#media.generations.current);
    this.#media = {
      ...this.#media,
      ...(patch.storageId === undefined ? {} : { storageId: patch.storageId }),
      ...(patch.generations === undefined ? {} : { generations: patch.generations }),
      ...(patch.flags === undefined ? {} : { flags: patch.flags }),
      ...(patch.outdated === undefined ? {} : { outdated: patch.outdated }),
    };
    return this.#media;
  }

  /** The owner grant, kept for the device's life as its data is (GrantStore). */
  ownerGrant(): OwnerGrant {
    return this.#grant;
  }

  storeOwnerGrant(grant: OwnerGrant): Promise<void> {
    this.#check(0, 0);
    this.#grant = grant;
    return Promise.resolve();
  }

  readBitmap(): Promise<Uint8Array> {
    this.#check(0, 0);
    return Promise.resolve(this.#bitmap.slice());
  }

  storeBitmap(at: number, bytes: Uint8Array): Promise<void> {
    this.#check(0, 0);
    if (!Number.isSafeInteger(at) || at < 0 || at + bytes.length > this.#bitmap.length) {
      throw new BlockError("EINVAL", `bitmap range ${at}+${bytes.length} is outside the region`);
    }
    this.#bitmap.set(bytes, at);
    return Promise.resolve();
  }

  digest(offset: number, length: number, chunk: number): Promise<Uint8Array> {
    this.#check(offset, length);
    return digestChunks((o, l, into) => this.read(o, l, into), offset, length, chunk);
  }

  info(): BlockInfo {
    return this.#info;
  }

  /** Bytes of memory held by written chunks. */
  get allocatedBytes(): number {
    return this.#chunks.size * MEMORY_CHUNK;
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.#check(offset, length);
    const out = into ? into.subarray(0, length) : new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / MEMORY_CHUNK);
      const within = at - index * MEMORY_CHUNK;
      const n = Math.min(MEMORY_CHUNK - within, length - done);
      const chunk = this.#chunks.get(index);
      if (chunk) out.set(chunk.subarray(within, within + n), done);
      else if (into) out.fill(0, done, done + n);
      done += n;
    }
    return out;
  }

  async write(offset: number, data: Uint8Array, _fua: boolean): Promise<void> {
    this.#check(offset, data.length);
    this.#writable();
    this.#touch();
    let done = 0;
    while (done < data.length) {
      const at = offset + done;
      const index = Math.floor(at / MEMORY_CHUNK);
      const within = at - index * MEMORY_CHUNK;
      const n = Math.min(MEMORY_CHUNK - within, data.length - done);
      let chunk = this.#chunks.get(index);
      if (!chunk) {
        chunk = this.#slabs.take();
        this.#chunks.set(index, chunk);
      }
      chunk.set(data.subarray(done, done + n), within);
      done += n;
    }
  }

  async flush(): Promise<void> {
    this.#check(0, 0);
  }

  /** Before the first change to the data, the media stops being blank. */
  #touch(): void {
    if (this.#media.flags & MEDIA_FLAG_BLANK) {
      this.#media = { ...this.#media, flags: this.#media.flags & ~MEDIA_FLAG_BLANK };
    }
  }

  async trim(offset: number, length: number, _fua: boolean): Promise<void> {
    return this.#discard(offset, length);
  }

  async zero(offset: number, length: number): Promise<void> {
    return this.#discard(offset, length);
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.#check(offset, length);
    const extents: Extent[] = [];
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const index = Math.floor(at / MEMORY_CHUNK);
      const n = Math.min((index + 1) * MEMORY_CHUNK, end) - at;
      const hole = !this.#chunks.has(index);
      const last = extents[extents.length - 1];
      if (last && last.hole === hole) {
        extents[extents.length - 1] = { length: last.length + n, hole, zero: hole };
      } else {
        extents.push({ length: n, hole, zero: hole });
      }
      at += n;
    }
    return extents;
  }

  async cache(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#chunks.clear();
    this.#slabs.clear();
  }

  /** Zeros a range: whole chunks are dropped, partial ones cleared in place. */
  async #discard(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    this.#writable();
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const index = Math.floor(at / MEMORY_CHUNK);
      const within = at - index * MEMORY_CHUNK;
      const n = Math.min(MEMORY_CHUNK - within, end - at);
      if (n === MEMORY_CHUNK) {
        const chunk = this.#chunks.get(index);
        if (chunk !== undefined) {
          this.#chunks.delete(index);
          this.#slabs.give(chunk);
        }
      } else this.#chunks.get(index)?.fill(0, within, within + n);
      at += n;
    }
  }

  #check(offset: number, length: number): void {
    if (this.#closed) throw new BlockError("ESHUTDOWN", "memory device is closed");
    if (
      !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
      offset + length > this.#info.size
    ) {
      throw new BlockError(
        "EINVAL",
        `range ${offset}+${length} is outside the device (size ${this.#info.size})`,
      );
    }
  }

  #writable(): void {
    if (this.#info.readOnly) throw new BlockError("EPERM", "the device is read-only");
  }
}

/** Slab size: 16 MiB, 256 chunks (a fresh 64 KiB buffer per chunk made filling 1 GiB GC-bound). */
const SLAB_BYTES = 16 * 1024 * 1024;

/**
 * Hands out zeroed chunk views of large slabs, and takes back discarded chunks for reuse (their
 * memory stays with the device until it closes).
 */
class ChunkSlabs {
  /** No slab larger than the device needs. */
  readonly #slabBytes: number;
  #slab: Uint8Array | undefined;
  #used = 0;
  readonly #free: Uint8Array[] = [];

  constructor(deviceBytes: number) {
    const chunks = Math.max(1, Math.ceil(deviceBytes / MEMORY_CHUNK));
    this.#slabBytes = Math.min(SLAB_BYTES, chunks * MEMORY_CHUNK);
  }

  take(): Uint8Array {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused.fill(0);
    if (this.#slab === undefined || this.#used === this.#slab.length) {
      this.#slab = new Uint8Array(this.#slabBytes);
      this.#used = 0;
    }
    const chunk = this.#slab.subarray(this.#used, this.#used + MEMORY_CHUNK);
    this.#used += MEMORY_CHUNK;
    return chunk;
  }

  give(chunk: Uint8Array): void {
    this.#free.push(chunk);
  }

  clear(): void {
    this.#slab = undefined;
    this.#free.length = 0;
  }
}
