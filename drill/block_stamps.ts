/**
 * Self-describing data (drills, tests): every 512-byte unit written carries its own absolute
 * offset, the writer's id and a sequence number, and the rest of the unit is a pattern derived
 * from those three. A read that comes back from the wrong place, from a stale write, or mixed
 * from two writers is therefore obvious, whatever layer moved the bytes.
 */

/** Granularity of the stamps; buffers given to {@link fillBlock} are a whole number of units. */
export const STAMP_UNIT = 512;
const MAGIC = 0x42545344; // "DSTB" little-endian

/** Who wrote a block, as read back from its stamps. */
export interface BlockStamp {
  readonly writer: number;
  readonly seq: number;
}

/** Fills `buf` (a whole number of units) as written by `writer` at `offset` with `seq`. */
export function fillBlock(buf: Uint8Array, offset: number, writer: number, seq: number): void {
  if (buf.length % STAMP_UNIT !== 0) {
    throw new RangeError(`fillBlock needs a multiple of ${STAMP_UNIT} bytes, got ${buf.length}`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let at = 0; at < buf.length; at += STAMP_UNIT) {
    const unitOffset = offset + at;
    view.setUint32(at, MAGIC, true);
    view.setFloat64(at + 4, unitOffset, true);
    view.setUint32(at + 12, writer >>> 0, true);
    view.setUint32(at + 16, seq >>> 0, true);
    let state = seed(unitOffset, writer, seq);
    for (let i = at + 20; i < at + STAMP_UNIT; i += 4) {
      state = xorshift(state);
      view.setUint32(i, state, true);
    }
  }
}

/**
 * Checks every unit of `buf`, read at `offset`: returns the one writer and sequence they all
 * carry, or an Error saying what is wrong (zeros, foreign offset, corrupt pattern, or a mix).
 */
export function checkBlock(buf: Uint8Array, offset: number): BlockStamp | Error {
  if (buf.length === 0 || buf.length % STAMP_UNIT !== 0) {
    return new Error(`checkBlock needs a positive multiple of ${STAMP_UNIT} bytes`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let first: BlockStamp | undefined;
  for (let at = 0; at < buf.length; at += STAMP_UNIT) {
    const unitOffset = offset + at;
    if (view.getUint32(at, true) !== MAGIC) {
      const what = isZero(buf.subarray(at, at + STAMP_UNIT)) ? "zeros" : "no stamp";
      return new Error(`unit at ${unitOffset}: ${what}`);
    }
    const stamped = view.getFloat64(at + 4, true);
    if (stamped !== unitOffset) {
      return new Error(`unit at ${unitOffset} holds data written for offset ${stamped}`);
    }
    const writer = view.getUint32(at + 12, true);
    const seq = view.getUint32(at + 16, true);
    let state = seed(unitOffset, writer, seq);
    for (let i = at + 20; i < at + STAMP_UNIT; i += 4) {
      state = xorshift(state);
      if (view.getUint32(i, true) !== state) {
        return new Error(`unit at ${unitOffset} (writer ${writer} seq ${seq}) is corrupt at ${i}`);
      }
    }
    if (!first) first = { writer, seq };
    else if (first.writer !== writer || first.seq !== seq) {
      return new Error(
        `block at ${offset} mixes writer ${first.writer} seq ${first.seq} with writer ${writer} ` +
          `seq ${seq} at ${unitOffset}`,
      );
    }
  }
  return first!;
}

/** True when every byte is zero. */
export function isZero(buf: Uint8Array): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

function seed(offset: number, writer: number, seq: number): number {
  // Mix the three so neighbouring units, writers and sequences get unrelated patterns.
  let h = Math.imul((offset / STAMP_UNIT) >>> 0, 0x9e3779b1) ^ Math.imul(writer, 0x85ebca6b) ^
    Math.imul(seq, 0xc2b2ae35) ^ Math.floor(offset / 2 ** 32);
  h ^= h >>> 16;
  return (h >>> 0) || 1;
}

function xorshift(x: number): number {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  return x >>> 0;
}
