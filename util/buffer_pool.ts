/**
 * A pool of byte buffers in power-of-two size classes, shared by every connection of a server,
 * so the data path reuses read, write and reply buffers instead of allocating per request
 * (a fresh buffer costs about 2 µs even at 4 KiB). Bounded: the pool keeps at most a total of
 * idle bytes, each class at most half of it, and never keeps buffers for huge requests, so what
 * a burst of large requests allocated goes back to the system once they are answered.
 *
 * Every buffer is lent (util/buffer_lease.ts): `put` is its owner letting go, and the buffer comes
 * back only once everything that still holds a view of it (a request waiting for its node, a
 * link's send queue) has let go too.
 */
import { lend, type Release } from "./buffer_lease.ts";

const MIN_CLASS = 12; // 4 KiB
const MAX_CLASS = 27; // 128 MiB
/**
 * Every buffer is a power of two plus this much, so a power-of-two payload with a reply header
 * in front of it (at most 40 bytes) still fits its own class instead of one twice as large.
 */
const SLACK = 64;

export interface PoolLimits {
  /** Most idle bytes kept over all classes (default 64 MiB). */
  readonly maxIdleBytes?: number;
  /** Largest buffer kept for reuse; larger ones are left to the garbage collector (8 MiB). */
  readonly maxPooledBuffer?: number;
}

export class BufferPool {
  readonly #free: Uint8Array[][] = [];
  readonly #idleBytes: number[] = [];
  readonly #maxIdle: number;
  readonly #maxClassIdle: number;
  readonly #maxPooled: number;
  /** Each lent buffer's owner release, and whether the owner vouched it may be freed. */
  readonly #owners = new WeakMap<ArrayBufferLike, { release: Release; free: boolean }>();
  #idle = 0;

  constructor(limits: PoolLimits = {}) {
    this.#maxIdle = limits.maxIdleBytes ?? 64 * 1024 * 1024;
    this.#maxClassIdle = this.#maxIdle / 2;
    this.#maxPooled = limits.maxPooledBuffer ?? 8 * 1024 * 1024;
    for (let c = 0; c <= MAX_CLASS; c++) {
      this.#free.push([]);
      this.#idleBytes.push(0);
    }
  }

  /** Bytes held idle for reuse now. */
  get idleBytes(): number {
    return this.#idle;
  }

  /** A buffer of at least `size` bytes (its length is the class size; use a subarray). */
  get(size: number): Uint8Array {
    const cls = classOf(size);
    if (cls > MAX_CLASS) return new Uint8Array(size);
    let buffer = this.#free[cls]!.pop();
    if (buffer === undefined) buffer = new Uint8Array((1 << cls) + SLACK);
    else {
      this.#idleBytes[cls]! -= buffer.length;
      this.#idle -= buffer.length;
    }
    const lent = buffer;
    const owner = { release: lend(lent, () => this.#back(lent, owner.free)), free: false };
    this.#owners.set(lent.buffer, owner);
    return lent;
  }

  /**
   * The owner lets go of a buffer obtained from {@link get}; it must not touch it afterwards.
   * It comes back to the pool once nothing holds a view of it any more. With `free`, the owner
   * says the buffer need not outlive its holders: one the pool does not keep is then detached,
   * which frees its memory now rather than at some later garbage collection, so an idle server
   * gives back what a burst of huge requests took.
   */
  put(buffer: Uint8Array, free = false): void {
    const owner = this.#owners.get(buffer.buffer);
    if (owner === undefined) return;
    this.#owners.delete(buffer.buffer);
    owner.free = free;
    owner.release();
  }

  #back(buffer: Uint8Array, free: boolean): void {
    const length = buffer.byteLength;
    if (buffer.byteOffset !== 0 || buffer.buffer.byteLength !== length) return;
    const cls = classOf(length);
    if (cls > MAX_CLASS || (1 << cls) + SLACK !== length) return;
    if (
      length - SLACK > this.#maxPooled || this.#idle + length > this.#maxIdle ||
      this.#idleBytes[cls]! + length > this.#maxClassIdle
    ) {
      if (free) (buffer.buffer as ArrayBuffer).transfer(0);
      return;
    }
    this.#free[cls]!.push(buffer);
    this.#idleBytes[cls]! += length;
    this.#idle += length;
  }
}

function classOf(size: number): number {
  const bytes = size - SLACK;
  if (bytes <= 1 << MIN_CLASS) return MIN_CLASS;
  if (bytes > 1 << MAX_CLASS) return MAX_CLASS + 1;
  return 32 - Math.clz32(bytes - 1);
}
