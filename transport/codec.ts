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

/**
 * Encodes a header of the shape {@link decodeFlatMap} reads (at most 15 fields) into `into`
 * from 0, without msgpackr. Returns the byte count, or undefined when the header has any other
 * shape or does not fit, so the caller falls back to msgpackr.
 */
export function encodeFlatMap(
  header: Readonly<Record<string, unknown>>,
  into: Uint8Array,
): number | undefined {
  const keys = Object.keys(header);
  if (keys.length > 15) return undefined;
  into[0] = 0x80 + keys.length;
  let at = 1;
  const limit = into.length - 16; // room for any one scalar
  for (const key of keys) {
    if (key.length === 0 || key.length > 31 || at + 1 + key.length > limit) return undefined;
    at = writeAscii(into, at, key);
    if (at < 0) return undefined;
    const value = header[key];
    if (typeof value === "number") {
      if (Number.isInteger(value) && value >= -0x80000000 && value <= 0xffffffff) {
        if (value >= 0) {
          if (value < 0x80) into[at++] = value;
          else if (value < 0x100) {
            into[at++] = 0xcc;
            into[at++] = value;
          } else if (value < 0x10000) {
            into[at++] = 0xcd;
            into[at++] = value >>> 8;
            into[at++] = value;
          } else {
            into[at++] = 0xce;
            writeU32(into, at, value);
            at += 4;
          }
        } else if (value >= -32) into[at++] = value & 0xff;
        else {
          into[at++] = 0xd2;
          writeU32(into, at, value >>> 0);
          at += 4;
        }
      } else {
        into[at++] = 0xcb;
        scratch.setFloat64(0, value);
        for (let i = 0; i < 8; i++) into[at++] = scratch.getUint8(i);
      }
    } else if (typeof value === "string") {
      if (value.length > 31 || at + 1 + value.length > limit) return undefined;
      at = writeAscii(into, at, value);
      if (at < 0) return undefined;
    } else if (typeof value === "boolean") into[at++] = value ? 0xc3 : 0xc2;
    else if (value === null) into[at++] = 0xc0;
    else if (value instanceof Uint8Array && value.length <= 0xff) {
      if (at + 2 + value.length > limit) return undefined;
      into[at++] = 0xc4;
      into[at++] = value.length;
      into.set(value, at);
      at += value.length;
    } else return undefined;
  }
  return at;
}

function writeU32(into: Uint8Array, at: number, value: number): void {
  into[at] = value >>> 24;
  into[at + 1] = value >>> 16;
  into[at + 2] = value >>> 8;
  into[at + 3] = value;
}

/** Writes `text` as a fixstr; -1 when a character is not ASCII. */
function writeAscii(into: Uint8Array, at: number, text: string): number {
  into[at++] = 0xa0 + text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return -1;
    into[at++] = c;
  }
  return at;
}
