/**
 * The block contract: the small set of operations every block actor answers — local node,
 * remote node proxy, linear, mirror, parity — shaped like nbdkit's plugin callbacks. The NBD
 * edge, mappings and resync all speak only this.
 */

/** Sizes and capabilities of a block device; all sizes in bytes. */
export interface BlockInfo {
  readonly size: number;
  /** Smallest request granularity the device handles without read-modify-write. */
  readonly minBlock: number;
  readonly preferredBlock: number;
  /** Largest single request. */
  readonly maxBlock: number;
  readonly readOnly: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canZero: boolean;
  readonly canFastZero: boolean;
  readonly canExtents: boolean;
  readonly canCache: boolean;
  /** True only when a flush on one connection makes every connection's writes durable. */
  readonly canMultiConn: boolean;
}

/** One run of the address space with the same allocation state (NBD base:allocation). */
export interface Extent {
  readonly length: number;
  /** Not allocated on the media. */
  readonly hole: boolean;
  /** Reads as zeros. */
  readonly zero: boolean;
}

export interface ZeroOptions {
  readonly fua: boolean;
  /** Fail with ENOTSUP rather than fall back to writing zeros slowly. */
  readonly fastZero: boolean;
  /** The device may deallocate instead of writing zeros. */
  readonly mayTrim: boolean;
}

/** Error codes a block operation fails with; they map one to one onto NBD's errors. */
export type BlockErrorCode =
  | "EPERM"
  | "EIO"
  | "ENOMEM"
  | "EINVAL"
  | "ENOSPC"
  | "EOVERFLOW"
  | "ENOTSUP"
  | "ESHUTDOWN"
  | "ETIMEDOUT"
  /**
   * The node (or mirror) belongs to a newer owner: this exporter was fenced (see
   * actors/node/claim.ts). Never a fault of the leg; NBD clients see EIO.
   */
  | "EFENCED";

export class BlockError extends Error {
  /** `detail` is the message without the code, for passing the error on (to a peer, a reply). */
  constructor(readonly code: BlockErrorCode, readonly detail: string) {
    super(`${code}: ${detail}`);
    this.name = "BlockError";
  }
}

/** The operations of a block actor. Offsets and lengths are bytes. */
export interface BlockDevice {
  info(): BlockInfo;
  /**
   * Reads `length` bytes at `offset` and returns a view holding them. When `into` is given (at
   * least `length` long) the data is placed there and a view of it returned, so the caller can
   * reuse pooled buffers — except when `into` may still be written by an attempt the device
   * abandoned (a mirror that failed over): the data then comes back in another buffer, and the
   * caller uses the returned view (see {@link landedIn}), never `into`'s bytes. Without `into`
   * the returned buffer is new and owned by the caller. A device that keeps a view of `into`
   * past its call holds it (util/buffer_lease.ts).
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /**
   * Writes `data`; with `fua` it resolves only once the data is durable. A device that keeps a
   * view of `data` past its call (a request waiting for its node, a link's send queue) holds it
   * (util/buffer_lease.ts), so the buffer does not go back to its pool under it, even when a
   * deadline above fails the write early.
   */
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void>;
  /** Makes every acknowledged write durable. */
  flush(): Promise<void>;
  /** Discards a range (an advisory hint: later reads return unspecified data). */
  trim(offset: number, length: number, fua: boolean): Promise<void>;
  /** Makes a range read as zeros. */
  zero(offset: number, length: number, options: ZeroOptions): Promise<void>;
  /** Allocation state of a range, covering at least its first byte. */
  extents(offset: number, length: number): Promise<Extent[]>;
  /** Hints that a range will be read soon. */
  cache(offset: number, length: number): Promise<void>;
  close(): Promise<void>;
}

/** Did a read's returned view land in `into` (its memory, at its start)? */
export function landedIn(data: Uint8Array, into: Uint8Array): boolean {
  return data.buffer === into.buffer && data.byteOffset === into.byteOffset;
}

/** The generation ids on a node's media (DRBD's current / bitmap / history). */
export interface MediaGenerations {
  readonly current: string;
  readonly bitmap: string;
  readonly history: readonly string[];
}

/** What a node's media records about its place in a storage. */
export interface MediaState {
  /** The storage id ("age") stamped on the media; undefined where the media has none. */
  readonly storageId: string | undefined;
  readonly generations: MediaGenerations;
  /** Opaque bits for the mapping above (membership, bitmap granularity). */
  readonly flags: number;
  /** Bytes the stored bitmap region holds. */
  readonly bitmapBytes: number;
  /** Ids of the legs its mirror recorded as not in sync at its last stamp ("outdated peers"). */
  readonly outdated: readonly string[];
}

/** Changes to a node's media state; absent fields stay as they are. */
export interface MediaPatch {
  readonly storageId?: string;
  readonly generations?: MediaGenerations;
  readonly flags?: number;
  readonly outdated?: readonly string[];
  /**
   * Compare-and-swap: the change is made only while the media's current generation is one of
   * these (the ones this exporter wrote or read); else it fails with EFENCED, nothing changed.
   */
  readonly expectCurrent?: readonly string[];
}

/**
 * Optional: a block device whose media keeps metadata and a write-intent bitmap (file media,
 * memory nodes, and remote nodes that have them). Every update is durable when it resolves.
 */
export interface MediaDevice {
  media(): Promise<MediaState>;
  updateMedia(patch: MediaPatch): Promise<MediaState>;
  /** The whole stored bitmap region. */
  readBitmap(): Promise<Uint8Array>;
  /** Durably stores `bytes` at byte `at` of the bitmap region. */
  storeBitmap(at: number, bytes: Uint8Array): Promise<void>;
  /** A digest of each `chunk`-sized piece of [offset, offset+length), concatenated. */
  digest(offset: number, length: number, chunk: number): Promise<Uint8Array>;
}

/** Bytes of one digest in {@link MediaDevice.digest} replies. */
export const DIGEST_BYTES = 16;

/** True when `device` offers the media operations. */
export function isMediaDevice(device: unknown): device is BlockDevice & MediaDevice {
  const d = device as Partial<MediaDevice> | null;
  return typeof d?.media === "function" && typeof d.digest === "function";
}
