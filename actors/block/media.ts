/**
 * On-media metadata of a storage node, kept in a reserved region at the start of the media so it
 * survives restarts: which storage the data belongs to (its "age"), the node's leg index, sizes,
 * DRBD-style generation ids, the owner epoch it granted last (fencing) and a write-intent bitmap.
 * The header (media_header.ts: fields and encoding) is written in two alternating checksummed
 * copies, each followed by a data sync, so a torn header write leaves the previous copy to fall
 * back on; media without a valid header is refused, never used as if it held data.
 *
 * Layout (all little-endian):
 *   [0, 4 KiB)        header copy A (even sequence numbers)
 *   [4 KiB, 8 KiB)    header copy B (odd sequence numbers)
 *   [8 KiB, ...)      write-intent bitmap, one bit per chunk, padded to 4 KiB pages
 *   [dataOffset, ...) the data area; dataOffset is a multiple of 1 MiB, at least 1 MiB
 */
import type { Random } from "../../util/random.ts";
import { type BlockDevice, DIGEST_BYTES, isMediaDevice, type MediaDevice } from "./contract.ts";
import { createHash } from "node:crypto";
import {
  alignUp,
  BITMAP_OFFSET,
  decodeHeader,
  encodeHeader,
  type Generations,
  hex,
  layoutFor,
  MEDIA_FLAG_BLANK,
  MEDIA_PAGE,
  MEDIA_VERSION,
  MediaError,
  type MediaMeta,
  METADATA_ALIGN,
  NO_GENERATION,
  NO_OWNER,
} from "./media_header.ts";

export {
  BITMAP_OFFSET,
  type Generations,
  HISTORY_SLOTS,
  layoutFor,
  MEDIA_FLAG_BLANK,
  MEDIA_MAGIC,
  MEDIA_PAGE,
  MEDIA_VERSION,
  MediaError,
  type MediaErrorCode,
  type MediaLayout,
  type MediaMeta,
  METADATA_ALIGN,
  NO_GENERATION,
  NO_OWNER,
  OUTDATED_SLOTS,
  OWNER_LABEL_BYTES,
} from "./media_header.ts";

/**
 * What may change in an update; sizes are fixed at format time. The storage id changes only when
 * a mirror adopts media that lacked its age (it is resynced in full first).
 */
export interface MediaChanges {
  readonly storageId?: string;
  readonly leg?: number;
  readonly generations?: Generations;
  readonly flags?: number;
  readonly outdated?: readonly string[];
  readonly ownerEpoch?: number;
  readonly owner?: string;
  readonly ownerLabel?: string;
}

/** Positional access to the raw media, as the file device provides it. */
export interface MediaIo {
  /** Fills `buf` from `position`; bytes past the end of the media read as zeros. */
  pread(buf: Uint8Array, position: number): Promise<void>;
  pwrite(buf: Uint8Array, position: number): Promise<void>;
  /** Makes the writes so far durable. */
  sync(): Promise<void>;
  /** Bytes of raw media. */
  size(): number;
}

export interface FormatOptions {
  readonly dataSize: number;
  readonly chunkSize?: number;
  readonly leg?: number;
  /** Joins an existing storage; a fresh one gets a new random id. */
  readonly storageId?: string;
  readonly generations?: Generations;
  readonly flags?: number;
  /** Source of ids for deterministic tests; defaults to the system's secure random. */
  readonly random?: Random;
  /** The data area is known to read as zeros: the media is marked blank. */
  readonly blank?: boolean;
}

export interface OpenExpectations {
  readonly storageId?: string;
  readonly dataSize?: number;
  readonly leg?: number;
}

/**
 * The smallest chunk a media's bitmap region can track. Regions are sized for the smallest
 * chunk a mirror may use (32 KiB per GiB of data), so any mirror chunk size fits any media.
 */
export const DEFAULT_CHUNK = MEDIA_PAGE;

/** A fresh random storage id (32 hex digits). */
export function newStorageId(random?: Random): string {
  return hex(randomBytes(16, random));
}

/** A fresh random generation id (16 hex digits, never NO_GENERATION). */
export function newGenerationId(random?: Random): string {
  for (;;) {
    const id = hex(randomBytes(8, random));
    if (id !== NO_GENERATION) return id;
  }
}

/**
 * Writes fresh metadata: a cleared bitmap, an invalidated copy B, then copy A, each step synced.
 * The data area is left as it is: a new storage id tells the layers above it holds nothing.
 */
export async function formatMedia(io: MediaIo, options: FormatOptions): Promise<MediaMeta> {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK;
  const layout = layoutFor(options.dataSize, chunkSize);
  const meta: MediaMeta = {
    ...layout,
    version: MEDIA_VERSION,
    sequence: 0,
    storageId: options.storageId ?? newStorageId(options.random),
    leg: options.leg ?? 0,
    dataSize: options.dataSize,
    chunkSize,
    generations: options.generations ??
      { current: newGenerationId(options.random), bitmap: NO_GENERATION, history: [] },
    flags: (options.flags ?? 0) | (options.blank ? MEDIA_FLAG_BLANK : 0),
    outdated: [],
    ownerEpoch: 0,
    owner: NO_OWNER,
    ownerLabel: "",
  };
  const encoded = encodeHeader(meta); // validates ids before anything is written
  const needed = layout.dataOffset + options.dataSize;
  if (io.size() < needed) {
    throw new MediaError(
      "size",
      `media holds ${io.size()} bytes; ${options.dataSize} bytes of data need ${needed}`,
    );
  }
  const zeros = new Uint8Array(Math.min(layout.bitmapBytes, METADATA_ALIGN));
  for (let at = 0; at < layout.bitmapBytes; at += zeros.length) {
    await io.pwrite(
      zeros.subarray(0, Math.min(zeros.length, layout.bitmapBytes - at)),
      BITMAP_OFFSET + at,
    );
  }
  await io.pwrite(zeros.subarray(0, MEDIA_PAGE), MEDIA_PAGE);
  await io.sync();
  await io.pwrite(encoded, 0);
  await io.sync();
  return meta;
}

/** Reads and validates the metadata; throws MediaError when the media must not be used. */
export async function openMedia(io: MediaIo, expect: OpenExpectations = {}): Promise<MediaMeta> {
  const page = new Uint8Array(MEDIA_PAGE);
  const problems: MediaError[] = [];
  let best: MediaMeta | undefined;
  for (let slot = 0; slot < 2; slot++) {
    await io.pread(page, slot * MEDIA_PAGE);
    const decoded = decodeHeader(page);
    if (decoded instanceof MediaError) problems.push(decoded);
    else if (decoded.sequence % 2 !== slot) {
      problems.push(new MediaError("corrupt", `header copy ${slot} holds a misplaced copy`));
    } else if (!best || decoded.sequence > best.sequence) best = decoded;
  }
  if (!best) {
    const worst = problems.find((p) => p.code === "version") ??
      problems.find((p) => p.code === "corrupt") ?? problems[0]!;
    throw worst;
  }
  const needed = best.dataOffset + best.dataSize;
  if (io.size() < needed) {
    throw new MediaError(
      "size",
      `media holds ${io.size()} bytes but its metadata records ${best.dataSize} bytes of data ` +
        `(${needed} in all): the media was truncated or replaced`,
    );
  }
  if (expect.dataSize !== undefined && expect.dataSize !== best.dataSize) {
    throw new MediaError(
      "size",
      `media holds ${best.dataSize} bytes of data, expected ${expect.dataSize}`,
    );
  }
  if (expect.storageId !== undefined && expect.storageId !== best.storageId) {
    throw new MediaError(
      "storage",
      `media belongs to storage ${best.storageId}, not ${expect.storageId}: ` +
        `format it for this storage (it will then be resynced in full)`,
    );
  }
  if (expect.leg !== undefined && expect.leg !== best.leg) {
    throw new MediaError(
      "leg",
      `media is leg ${best.leg} of its storage, expected leg ${expect.leg}`,
    );
  }
  return best;
}

/** Writes `changes` durably into the copy not holding `current`, and returns the new metadata. */
export async function updateMedia(
  io: MediaIo,
  current: MediaMeta,
  changes: MediaChanges,
): Promise<MediaMeta> {
  const next: MediaMeta = {
    ...current,
    ...definedOnly(changes),
    sequence: current.sequence + 1,
  };
  await io.pwrite(encodeHeader(next), (next.sequence % 2) * MEDIA_PAGE);
  await io.sync();
  return next;
}

/** The whole bitmap region (bit i set: chunk i may differ from the other legs). */
export async function readBitmap(io: MediaIo, meta: MediaMeta): Promise<Uint8Array> {
  const bitmap = new Uint8Array(meta.bitmapBytes);
  await io.pread(bitmap, meta.bitmapOffset);
  return bitmap;
}

/**
 * Writes the pages of `bitmap` covering bytes [from, to) and syncs: call it before
 * acknowledging a write whose chunk bit was just set.
 */
export async function writeBitmap(
  io: MediaIo,
  meta: MediaMeta,
  bitmap: Uint8Array,
  from = 0,
  to = meta.bitmapBytes,
): Promise<void> {
  if (bitmap.length !== meta.bitmapBytes) {
    throw new RangeError(`bitmap holds ${bitmap.length} bytes, the media ${meta.bitmapBytes}`);
  }
  const start = Math.floor(from / MEDIA_PAGE) * MEDIA_PAGE;
  const end = Math.min(alignUp(to, MEDIA_PAGE), meta.bitmapBytes);
  if (start >= end) return;
  await io.pwrite(bitmap.subarray(start, end), meta.bitmapOffset + start);
  await io.sync();
}

function randomBytes(n: number, random: Random | undefined): Uint8Array {
  const bytes = new Uint8Array(n);
  if (random) { for (let i = 0; i < n; i++) bytes[i] = Math.floor(random.next() * 256); }
  else crypto.getRandomValues(bytes);
  return bytes;
}

function definedOnly(changes: MediaChanges): MediaChanges {
  const out: { -readonly [K in keyof MediaChanges]: MediaChanges[K] } = {};
  if (changes.storageId !== undefined) out.storageId = changes.storageId;
  if (changes.leg !== undefined) out.leg = changes.leg;
  if (changes.generations !== undefined) out.generations = changes.generations;
  if (changes.flags !== undefined) out.flags = changes.flags;
  if (changes.outdated !== undefined) out.outdated = changes.outdated;
  if (changes.ownerEpoch !== undefined) out.ownerEpoch = changes.ownerEpoch;
  if (changes.owner !== undefined) out.owner = changes.owner;
  if (changes.ownerLabel !== undefined) out.ownerLabel = changes.ownerLabel;
  return out;
}

/**
 * Digests of each `chunk`-sized piece of [offset, offset+length) (the last may be shorter), each
 * DIGEST_BYTES of SHA-256, concatenated: what online verify and resync compare instead of data.
 */
export async function digestChunks(
  read: (offset: number, length: number, into: Uint8Array) => Promise<Uint8Array>,
  offset: number,
  length: number,
  chunk: number,
): Promise<Uint8Array> {
  const count = Math.ceil(length / chunk);
  const out = new Uint8Array(count * DIGEST_BYTES);
  const buf = new Uint8Array(Math.min(chunk, length));
  for (let i = 0; i < count; i++) {
    const at = offset + i * chunk;
    const n = Math.min(chunk, offset + length - at);
    const data = await read(at, n, buf);
    out.set(createHash("sha256").update(data).digest().subarray(0, DIGEST_BYTES), i * DIGEST_BYTES);
  }
  return out;
}

/** The media operations of `device` or of what it wraps (a guard's `inner`), if any. */
export function mediaOf(device: BlockDevice): (BlockDevice & MediaDevice) | undefined {
  for (let d: unknown = device, depth = 0; d !== undefined && depth < 8; depth++) {
    if (isMediaDevice(d)) return d;
    d = (d as { inner?: unknown }).inner;
  }
  return undefined;
}
