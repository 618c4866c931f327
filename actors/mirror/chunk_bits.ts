/**
 * A bitset over a mirror's chunks: which chunks may differ between legs, or which chunks one leg
 * lacks. Kept in memory, stored page by page in the legs' media bitmap regions; helpers here only
 * count, set, compare and walk bits.
 */

export class ChunkBits {
  readonly bytes: Uint8Array;

  constructor(readonly chunks: number, bytes?: Uint8Array) {
    this.bytes = new Uint8Array(Math.ceil(chunks / 8));
    if (bytes !== undefined) this.bytes.set(bytes.subarray(0, this.bytes.length));
    // Bits past the last chunk mean nothing; keep them clear so counts are exact.
    const spare = this.bytes.length * 8 - chunks;
    if (spare > 0) this.bytes[this.bytes.length - 1]! &= 0xff >> spare;
  }

  static full(chunks: number): ChunkBits {
    const bits = new ChunkBits(chunks);
    bits.bytes.fill(0xff);
    return new ChunkBits(chunks, bits.bytes);
  }

  has(chunk: number): boolean {
    return (this.bytes[chunk >> 3]! & (1 << (chunk & 7))) !== 0;
  }

  /** Sets a bit; true when it was clear. */
  set(chunk: number): boolean {
    const mask = 1 << (chunk & 7);
    const byte = this.bytes[chunk >> 3]!;
    if (byte & mask) return false;
    this.bytes[chunk >> 3] = byte | mask;
    return true;
  }

  /** Clears a bit; true when it was set. */
  clear(chunk: number): boolean {
    const mask = 1 << (chunk & 7);
    const byte = this.bytes[chunk >> 3]!;
    if (!(byte & mask)) return false;
    this.bytes[chunk >> 3] = byte & ~mask;
    return true;
  }

  /** Adds every bit of `other`. */
  or(other: ChunkBits): void {
    const n = Math.min(this.bytes.length, other.bytes.length);
    for (let i = 0; i < n; i++) this.bytes[i]! |= other.bytes[i]!;
  }

  count(): number {
    let n = 0;
    for (const byte of this.bytes) {
      let b = byte;
      while (b) {
        b &= b - 1;
        n++;
      }
    }
    return n;
  }

  isEmpty(): boolean {
    return this.bytes.every((b) => b === 0);
  }

  /** The first set bit at or after `from`, or -1. */
  next(from: number): number {
    for (let byteAt = from >> 3; byteAt < this.bytes.length; byteAt++) {
      const byte = this.bytes[byteAt]!;
      if (byte === 0) continue;
      for (let bit = byteAt === from >> 3 ? from & 7 : 0; bit < 8; bit++) {
        if (byte & (1 << bit)) return byteAt * 8 + bit;
      }
    }
    return -1;
  }

  /** Is every bit of this set in `other` too? */
  isSubsetOf(other: ChunkBits): boolean {
    return this.firstNotIn(other) < 0;
  }

  /** The first chunk set here and clear in `other`, or -1. */
  firstNotIn(other: ChunkBits): number {
    for (let i = 0; i < this.bytes.length; i++) {
      const extra = this.bytes[i]! & ~(other.bytes[i] ?? 0);
      if (extra !== 0) return i * 8 + Math.log2(extra & -extra);
    }
    return -1;
  }

  copy(): ChunkBits {
    return new ChunkBits(this.chunks, this.bytes);
  }
}

/**
 * Re-expresses bits kept at one chunk size in another: every byte range a set bit covered is
 * covered by set bits afterwards (used when the topology's chunk size changed between runs).
 */
export function rechunk(
  bits: ChunkBits,
  fromChunk: number,
  toChunk: number,
  chunks: number,
): ChunkBits {
  const out = new ChunkBits(chunks);
  for (let c = bits.next(0); c >= 0; c = bits.next(c + 1)) {
    const start = Math.floor((c * fromChunk) / toChunk);
    const end = Math.min(chunks, Math.ceil(((c + 1) * fromChunk) / toChunk));
    for (let d = start; d < end; d++) out.set(d);
  }
  return out;
}
