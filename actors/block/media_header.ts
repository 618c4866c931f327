/**
 * The header of a node's media: its constants, fields and their offsets, and the encoding of one
 * 4 KiB header copy (checksummed with SHA-256). media.ts reads and writes the copies; this file
 * only turns a MediaMeta into a page and back, refusing a page it cannot trust.
 */
import { createHash } from "node:crypto";

export const MEDIA_MAGIC = "DSTMEDIA";
export const MEDIA_VERSION = 1;
/** Size of one header copy, and the page size the bitmap is written in. */
export const MEDIA_PAGE = 4096;
export const BITMAP_OFFSET = 2 * MEDIA_PAGE;
/** The data area starts on a multiple of this, never before it. */
export const METADATA_ALIGN = 1024 * 1024;
/**
 * Older current generation ids kept, newest first. A mirror rotates its generation each time a
 * leg leaves the in-sync set, so under repeated faults a leg that stayed away is many rotations
 * behind: with too short a history it could no longer be told apart from a split brain (the
 * simulator found that with 4). The first 4 sit where they always did, the rest further on.
 */
export const HISTORY_SLOTS = 64;
/** History slots in the header's first history field (media written before there were more). */
const HISTORY_SLOTS_FIRST = 4;
/** Outdated leg ids kept (a mirror with more legs than this records the first ones only). */
export const OUTDATED_SLOTS = 32;
/**
 * Media flag: the data area has not been changed since it was formatted, and it reads as zeros
 * (a new file, a new memory node). Cleared durably before the first change to the data, so a
 * mirror may take blank legs of a new storage as identical without copying them.
 */
export const MEDIA_FLAG_BLANK = 1 << 16;
/** A generation id that was never set. */
export const NO_GENERATION = "0000000000000000";
/** The owner of media nobody has claimed (32 hex digits). */
export const NO_OWNER = "00000000000000000000000000000000";
/** Bytes of an owner's label kept on the media. */
export const OWNER_LABEL_BYTES = 64;

/** The random-or-zero 64-bit ids DRBD uses to tell which replica saw which writes. */
export interface Generations {
  /** Changes whenever this node starts taking writes that another leg may miss. */
  readonly current: string;
  /** The current id at the moment the bitmap started tracking changes; NO_GENERATION if clean. */
  readonly bitmap: string;
  /** Earlier current ids, newest first, at most HISTORY_SLOTS. */
  readonly history: readonly string[];
}

/** Where things are on the media, derived from data size and chunk size alone. */
export interface MediaLayout {
  readonly dataOffset: number;
  readonly bitmapOffset: number;
  /** Bytes reserved for the bitmap (a multiple of MEDIA_PAGE). */
  readonly bitmapBytes: number;
  /** Chunks in the data area: the number of meaningful bitmap bits. */
  readonly chunks: number;
}

export interface MediaMeta extends MediaLayout {
  readonly version: number;
  /** Bumped on every header update; the valid copy with the highest one wins. */
  readonly sequence: number;
  /** 32 hex digits, set once when the storage is created. */
  readonly storageId: string;
  /** This node's place in its storage (leg index). */
  readonly leg: number;
  readonly dataSize: number;
  readonly chunkSize: number;
  readonly generations: Generations;
  /** Bits for the layers above (clean/dirty marks and the like); opaque here. */
  readonly flags: number;
  /**
   * Ids (32 hex digits) of the legs that were not in sync when this media was last stamped by
   * its mirror (DRBD's "outdated" peers); at most OUTDATED_SLOTS.
   */
  readonly outdated: readonly string[];
  /**
   * The highest owner epoch this node has granted, to whom (fencing, actors/node/claim.ts):
   * writes from an exporter holding a lower one are refused. Media from before this field
   * read as epoch 0, owner NO_OWNER.
   */
  readonly ownerEpoch: number;
  readonly owner: string;
  /** The owner's name for messages (at most OWNER_LABEL_BYTES of UTF-8). */
  readonly ownerLabel: string;
}

export type MediaErrorCode =
  | "unformatted"
  | "version"
  | "corrupt"
  | "size"
  | "storage"
  | "leg"
  | "exists"
  /** Another process has the media open (media_lock.ts). */
  | "busy";

/** The media cannot be used as asked; the message says why and what to do. */
export class MediaError extends Error {
  constructor(readonly code: MediaErrorCode, message: string) {
    super(message);
    this.name = "MediaError";
  }
}

// Header field offsets.
const F_MAGIC = 0;
const F_VERSION = 8;
const F_SEQUENCE = 16;
const F_STORAGE = 24; // 16 bytes
const F_LEG = 40;
const F_CHUNK = 44;
const F_DATA_SIZE = 48;
const F_DATA_OFFSET = 56;
const F_BITMAP_OFFSET = 64;
const F_BITMAP_BYTES = 72;
const F_CURRENT = 80;
const F_BITMAP_GEN = 88;
const F_FLAGS = 96;
const F_HISTORY_COUNT = 100;
const F_HISTORY = 104; // HISTORY_SLOTS_FIRST * 8 bytes
const F_OUTDATED_COUNT = 160;
const F_OUTDATED = 164; // OUTDATED_SLOTS * 16 bytes, to 676
const F_OWNER_EPOCH = 680;
const F_OWNER = 688; // 16 bytes
const F_OWNER_LABEL_LEN = 704;
const F_OWNER_LABEL = 708; // OWNER_LABEL_BYTES
const F_HISTORY_MORE = 1024; // (HISTORY_SLOTS - HISTORY_SLOTS_FIRST) * 8 bytes, to 1504
const F_CHECKSUM = MEDIA_PAGE - 32; // sha-256 over [0, F_CHECKSUM)

/** The layout for a data area of `dataSize` bytes tracked in chunks of `chunkSize`. */
export function layoutFor(dataSize: number, chunkSize: number): MediaLayout {
  if (!Number.isSafeInteger(dataSize) || dataSize < 0) {
    throw new RangeError(`data size must be a whole number of bytes, got ${dataSize}`);
  }
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MEDIA_PAGE || (chunkSize & (chunkSize - 1))) {
    throw new RangeError(`chunk size must be a power of two of at least 4096, got ${chunkSize}`);
  }
  const chunks = Math.ceil(dataSize / chunkSize);
  const bitmapBytes = Math.max(MEDIA_PAGE, alignUp(Math.ceil(chunks / 8), MEDIA_PAGE));
  const dataOffset = alignUp(BITMAP_OFFSET + bitmapBytes, METADATA_ALIGN);
  return { dataOffset, bitmapOffset: BITMAP_OFFSET, bitmapBytes, chunks };
}

/** Where history slot `i` sits in the header. */
function historyAt(i: number): number {
  return i < HISTORY_SLOTS_FIRST
    ? F_HISTORY + i * 8
    : F_HISTORY_MORE + (i - HISTORY_SLOTS_FIRST) * 8;
}

export function encodeHeader(meta: MediaMeta): Uint8Array {
  const page = new Uint8Array(MEDIA_PAGE);
  const view = new DataView(page.buffer);
  page.set(new TextEncoder().encode(MEDIA_MAGIC), F_MAGIC);
  view.setUint32(F_VERSION, meta.version, true);
  view.setBigUint64(F_SEQUENCE, BigInt(meta.sequence), true);
  page.set(unhex(meta.storageId, 16, "storage id"), F_STORAGE);
  view.setUint32(F_LEG, meta.leg, true);
  view.setUint32(F_CHUNK, meta.chunkSize, true);
  view.setBigUint64(F_DATA_SIZE, BigInt(meta.dataSize), true);
  view.setBigUint64(F_DATA_OFFSET, BigInt(meta.dataOffset), true);
  view.setBigUint64(F_BITMAP_OFFSET, BigInt(meta.bitmapOffset), true);
  view.setBigUint64(F_BITMAP_BYTES, BigInt(meta.bitmapBytes), true);
  page.set(unhex(meta.generations.current, 8, "current generation"), F_CURRENT);
  page.set(unhex(meta.generations.bitmap, 8, "bitmap generation"), F_BITMAP_GEN);
  view.setUint32(F_FLAGS, meta.flags >>> 0, true);
  const history = meta.generations.history;
  if (history.length > HISTORY_SLOTS) {
    throw new RangeError(`at most ${HISTORY_SLOTS} history generations, got ${history.length}`);
  }
  view.setUint32(F_HISTORY_COUNT, history.length, true);
  history.forEach((id, i) => page.set(unhex(id, 8, "history generation"), historyAt(i)));
  const outdated = meta.outdated.slice(0, OUTDATED_SLOTS);
  view.setUint32(F_OUTDATED_COUNT, outdated.length, true);
  outdated.forEach((id, i) => page.set(unhex(id, 16, "outdated leg id"), F_OUTDATED + i * 16));
  if (!Number.isSafeInteger(meta.ownerEpoch) || meta.ownerEpoch < 0) {
    throw new RangeError(`owner epoch must be a whole number, got ${meta.ownerEpoch}`);
  }
  view.setBigUint64(F_OWNER_EPOCH, BigInt(meta.ownerEpoch), true);
  page.set(unhex(meta.owner, 16, "owner id"), F_OWNER);
  const label = ownerLabelBytes(meta.ownerLabel);
  view.setUint32(F_OWNER_LABEL_LEN, label.length, true);
  page.set(label, F_OWNER_LABEL);
  page.set(checksum(page), F_CHECKSUM);
  return page;
}

export function decodeHeader(page: Uint8Array): MediaMeta | MediaError {
  const magic = new TextDecoder().decode(page.subarray(F_MAGIC, F_MAGIC + 8));
  if (magic !== MEDIA_MAGIC) {
    return new MediaError(
      "unformatted",
      "the media carries no dst metadata: create (format) it before use",
    );
  }
  const view = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const version = view.getUint32(F_VERSION, true);
  if (version !== MEDIA_VERSION) {
    return new MediaError(
      "version",
      `media metadata is format version ${version}; this dst reads version ${MEDIA_VERSION}`,
    );
  }
  const sum = checksum(page);
  const stored = page.subarray(F_CHECKSUM, F_CHECKSUM + 32);
  if (!sum.every((b, i) => b === stored[i])) {
    return new MediaError("corrupt", "media metadata fails its checksum (torn or damaged write)");
  }
  const historyCount = view.getUint32(F_HISTORY_COUNT, true);
  const outdatedCount = view.getUint32(F_OUTDATED_COUNT, true);
  const labelLength = view.getUint32(F_OWNER_LABEL_LEN, true);
  const dataSize = Number(view.getBigUint64(F_DATA_SIZE, true));
  const chunkSize = view.getUint32(F_CHUNK, true);
  let layout: MediaLayout;
  try {
    layout = layoutFor(dataSize, chunkSize);
  } catch (e) {
    return new MediaError("corrupt", `media metadata is inconsistent: ${(e as Error).message}`);
  }
  const recorded = {
    dataOffset: Number(view.getBigUint64(F_DATA_OFFSET, true)),
    bitmapOffset: Number(view.getBigUint64(F_BITMAP_OFFSET, true)),
    bitmapBytes: Number(view.getBigUint64(F_BITMAP_BYTES, true)),
  };
  if (
    recorded.dataOffset !== layout.dataOffset || recorded.bitmapOffset !== layout.bitmapOffset ||
    recorded.bitmapBytes !== layout.bitmapBytes || historyCount > HISTORY_SLOTS ||
    outdatedCount > OUTDATED_SLOTS || labelLength > OWNER_LABEL_BYTES
  ) {
    return new MediaError("corrupt", "media metadata records a layout this version cannot read");
  }
  const history: string[] = [];
  for (let i = 0; i < historyCount; i++) {
    history.push(hex(page.subarray(historyAt(i), historyAt(i) + 8)));
  }
  const outdated: string[] = [];
  for (let i = 0; i < outdatedCount; i++) {
    outdated.push(hex(page.subarray(F_OUTDATED + i * 16, F_OUTDATED + i * 16 + 16)));
  }
  return {
    ...layout,
    version,
    sequence: Number(view.getBigUint64(F_SEQUENCE, true)),
    storageId: hex(page.subarray(F_STORAGE, F_STORAGE + 16)),
    leg: view.getUint32(F_LEG, true),
    dataSize,
    chunkSize,
    generations: {
      current: hex(page.subarray(F_CURRENT, F_CURRENT + 8)),
      bitmap: hex(page.subarray(F_BITMAP_GEN, F_BITMAP_GEN + 8)),
      history,
    },
    flags: view.getUint32(F_FLAGS, true),
    outdated,
    ownerEpoch: Number(view.getBigUint64(F_OWNER_EPOCH, true)),
    owner: hex(page.subarray(F_OWNER, F_OWNER + 16)),
    ownerLabel: new TextDecoder().decode(
      page.subarray(F_OWNER_LABEL, F_OWNER_LABEL + labelLength),
    ),
  };
}

/** `label` as UTF-8, cut to OWNER_LABEL_BYTES on a character boundary. */
function ownerLabelBytes(label: string): Uint8Array {
  const bytes = new TextEncoder().encode(label);
  if (bytes.length <= OWNER_LABEL_BYTES) return bytes;
  let end = OWNER_LABEL_BYTES;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function checksum(page: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(page.subarray(0, F_CHECKSUM)).digest());
}

export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(id: string, bytes: number, what: string): Uint8Array {
  if (id.length !== bytes * 2 || !/^[0-9a-f]*$/.test(id)) {
    throw new RangeError(`${what} must be ${bytes * 2} lowercase hex digits, got "${id}"`);
  }
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = parseInt(id.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
