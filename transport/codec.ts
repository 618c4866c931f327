/**
 * The one msgpack configuration every frame header goes through. Records (msgpackr's shared
 * structure definitions) are off, so each header decodes on its own: a frame lost or dropped by
 * the medium never leaves the decoder waiting for a structure it will not see again. The usual
 * flat header (short keys to numbers, flags, short strings, bytes) is decoded by hand, about
 * three times faster than msgpackr; anything else falls back to msgpackr.
 */

import { Packr, Unpackr } from "msgpackr";

const options = { useRecords: false, mapsAsObjects: true, moreTypes: false } as const;

/** Encodes frame headers. Results are short-lived: copy them before the next pack. */
export const packr: Packr = new Packr(options);

/** Decodes frame headers. Binary fields come back as views into the source bytes. */
export const unpackr: Unpackr = new Unpackr(options);

/** Headers with more fields than this go to msgpackr. */
const MAX_FLAT_FIELDS = 32;

/**
 * Decodes the common header shape without msgpackr: a map of up to 32 short ASCII keys to
 * numbers (up to 32 bits, or float), booleans, nil, short ASCII strings or binary (a view into
 * `bytes`, as msgpackr gives). Returns undefined for anything else (and for bytes that are not
 * exactly one such map), so the caller falls back to msgpackr, which decides validity.
 */
export function decodeFlatMap(
  bytes: Uint8Array,
  start: number,
  end: number,
): Record<string, unknown> | undefined {
  let at = start;
  if (at >= end) return undefined;
  const head = bytes[at++]!;
  let count: number;
  if (head >= 0x80 && head <= 0x8f) count = head - 0x80;
  else if (head === 0xde && at + 2 <= end) {
    // msgpackr writes every object as a map16: it learns the count only after the fields.
    count = (bytes[at]! << 8) | bytes[at + 1]!;
    at += 2;
    if (count > MAX_FLAT_FIELDS) return undefined;
  } else return undefined;
  const object: Record<string, unknown> = {};
  for (let n = count; n > 0; n--) {
    if (at >= end) return undefined;
    const keyHead = bytes[at++]!;
    if (keyHead < 0xa1 || keyHead > 0xbf) return undefined;
    const keyEnd = at + keyHead - 0xa0;
    if (keyEnd > end) return undefined;
    const key = ascii(bytes, at, keyEnd);
    if (key === undefined || key === "__proto__") return undefined;
    at = keyEnd;
    if (at >= end) return undefined;
    const tag = bytes[at++]!;
    let value: unknown;
    if (tag < 0x80) value = tag;
    else if (tag >= 0xe0) value = tag - 0x100;
    else if (tag >= 0xa0 && tag <= 0xbf) {
      const stop = at + tag - 0xa0;
      if (stop > end) return undefined;
      value = ascii(bytes, at, stop);
      if (value === undefined) return undefined;
      at = stop;
    } else {
      switch (tag) {
        case 0xc0:
          value = null;
          break;
        case 0xc2:
          value = false;
          break;
        case 0xc3:
          value = true;
          break;
        case 0xcc:
          if (at + 1 > end) return undefined;
          value = bytes[at++];
          break;
        case 0xcd:
          if (at + 2 > end) return undefined;
          value = (bytes[at]! << 8) | bytes[at + 1]!;
          at += 2;
          break;
        case 0xce:
          if (at + 4 > end) return undefined;
          value = u32(bytes, at);
          at += 4;
          break;
        case 0xd0:
          if (at + 1 > end) return undefined;
          value = (bytes[at++]! << 24) >> 24;
          break;
        case 0xd1:
          if (at + 2 > end) return undefined;
          value = (((bytes[at]! << 8) | bytes[at + 1]!) << 16) >> 16;
          at += 2;
          break;
        case 0xd2:
          if (at + 4 > end) return undefined;
          value = u32(bytes, at) | 0;
          at += 4;
          break;
        case 0xcb:
          if (at + 8 > end) return undefined;
          value = float64(bytes, at);
          at += 8;
          break;
        case 0xc4: {
          if (at + 1 > end) return undefined;
          const stop = at + 1 + bytes[at]!;
          if (stop > end) return undefined;
          value = bytes.subarray(at + 1, stop);
          at = stop;
          break;
        }
        default:
          return undefined;
      }
    }
    object[key] = value;
  }
  return at === end ? object : undefined;
}

function u32(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>>
    0;
}

const scratch = new DataView(new ArrayBuffer(8));

function float64(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) scratch.setUint8(i, bytes[at + i]!);
  return scratch.getFloat64(0);
}

/** The ASCII string in `bytes[start, end)`, or undefined when a byte is not ASCII. */
function ascii(bytes: Uint8Array, start: number, end: number): string | undefined {
  let text = "";
  for (let i = start; i < end; i++) {
    const c = bytes[i]!;
    if (c >= 0x80) return undefined;
    text += String.fromCharCode(c);
  }
  return text;
}
