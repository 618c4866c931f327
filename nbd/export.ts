/**
 * What a client is told about an export: transmission flags that say only what the device can
 * really do, and block size constraints taken from its BlockInfo and clamped to what the protocol
 * allows (a power-of-two minimum up to 64 KiB, a preferred size of at least 512, a maximum that
 * is a multiple of the minimum).
 */
import type { BlockDevice, BlockInfo } from "../actors/block/contract.ts";
import {
  FLAG_CAN_MULTI_CONN,
  FLAG_HAS_FLAGS,
  FLAG_READ_ONLY,
  FLAG_SEND_CACHE,
  FLAG_SEND_DF,
  FLAG_SEND_FAST_ZERO,
  FLAG_SEND_FLUSH,
  FLAG_SEND_FUA,
  FLAG_SEND_TRIM,
  FLAG_SEND_WRITE_ZEROES,
} from "./constants.ts";

/** A named export: what the server serves under `name`. */
export interface NbdExport {
  readonly name: string;
  readonly device: BlockDevice;
  /** Shown to humans by `nbdinfo --list` and NBD_INFO_DESCRIPTION. */
  readonly description?: string;
}

export interface BlockSizes {
  readonly min: number;
  readonly preferred: number;
  readonly max: number;
}

/** Transmission flags for `info`; SEND_DF only once structured replies are on. */
export function transmissionFlags(info: BlockInfo, structured: boolean): number {
  let flags = FLAG_HAS_FLAGS;
  const writable = !info.readOnly;
  if (info.readOnly) flags |= FLAG_READ_ONLY;
  if (info.canFlush) flags |= FLAG_SEND_FLUSH;
  if (info.canFua && writable) flags |= FLAG_SEND_FUA;
  if (info.canTrim && writable) flags |= FLAG_SEND_TRIM;
  if (info.canZero && writable) {
    flags |= FLAG_SEND_WRITE_ZEROES;
    if (info.canFastZero) flags |= FLAG_SEND_FAST_ZERO;
  }
  if (structured) flags |= FLAG_SEND_DF;
  if (info.canCache) flags |= FLAG_SEND_CACHE;
  if (info.canMultiConn) flags |= FLAG_CAN_MULTI_CONN;
  return flags;
}

function floorPowerOfTwo(n: number): number {
  return n < 1 ? 1 : 2 ** Math.floor(Math.log2(n));
}

export function blockSizes(info: BlockInfo): BlockSizes {
  const min = Math.min(floorPowerOfTwo(info.minBlock), 65536);
  const preferred = Math.max(floorPowerOfTwo(info.preferredBlock), min, 512);
  let max = Math.min(info.maxBlock, 0xffffffff);
  max -= max % min;
  max = Math.max(max, Math.min(preferred, info.size - (info.size % min)), min);
  return { min, preferred, max };
}
