/**
 * A pool of byte buffers in power-of-two size classes, shared by every connection of a server,
 * so the data path reuses read, write and reply buffers instead of allocating per request
 * (a fresh buffer costs about 2 µs even at 4 KiB). Bounded: each class keeps at most a budget of
 * idle bytes; the rest is left to the garbage collector.
 */

const MIN_CLASS = 12; // 4 KiB
const MAX_CLASS = 27; // 128 MiB
/**
 * Every buffer is a power of two plus this much, so a power-of-two payload with a reply header
 * in front of it (at most 40 bytes) still fits its own class instead of one twice as large.
 */
const SLACK = 64;

export class BufferPool {
  readonly #free: Uint8Array[][] = [];
  readonly #idleBudget: number;

  /** @param idleBytesPerClass most idle bytes each size class keeps for reuse. */
  constructor(idleBytesPerClass = 128 * 1024 * 1024) {
    this.#idleBudget = idleBytesPerClass;
    for (let c = 0; c <= MAX_CLASS; c++) this.#free.push([]);
  }

  /** A buffer of at least `size` bytes (its length is the class size; use a subarray). */
  get(size: number): Uint8Array {
    const cls = classOf(size);
    if (cls > MAX_CLASS) return new Uint8Array(size);
    return this.#free[cls]!.pop() ?? new Uint8Array((1 << cls) + SLACK);
  }

  /** Gives back a buffer obtained from {@link get}; the caller must not touch it afterwards. */
  put(buffer: Uint8Array): void {
    const length = buffer.byteLength;
    if (buffer.byteOffset !== 0 || buffer.buffer.byteLength !== length) return;
    const cls = classOf(length);
    if (cls > MAX_CLASS || (1 << cls) + SLACK !== length) return;
    const list = this.#free[cls]!;
    if ((list.length + 1) * length <= this.#idleBudget || list.length === 0) list.push(buffer);
  }
}

function classOf(size: number): number {
  const bytes = size - SLACK;
  if (bytes <= 1 << MIN_CLASS) return MIN_CLASS;
  if (bytes > 1 << MAX_CLASS) return MAX_CLASS + 1;
  return 32 - Math.clz32(bytes - 1);
}
