/**
 * Orders overlapping writes. A mirror sends every write to several legs at once; if two writes
 * to the same bytes were in flight together, the legs could apply them in different orders and
 * end up holding different data. A write therefore waits for every earlier in-flight write it
 * overlaps; writes to distinct ranges never wait for each other.
 */

interface Held {
  readonly start: number;
  readonly end: number;
  readonly done: Promise<void>;
}

export class RangeLock {
  readonly #held = new Set<Held>();

  /** Number of ranges currently held. */
  get size(): number {
    return this.#held.size;
  }

  /** Runs `fn` once no earlier holder overlaps [offset, offset+length). */
  async run<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T> {
    const start = offset;
    const end = offset + Math.max(length, 1);
    const waits: Promise<void>[] = [];
    for (const h of this.#held) {
      if (h.start < end && start < h.end) waits.push(h.done);
    }
    let release!: () => void;
    const held: Held = { start, end, done: new Promise<void>((r) => (release = r)) };
    this.#held.add(held);
    try {
      if (waits.length > 0) await Promise.all(waits);
      return await fn();
    } finally {
      this.#held.delete(held);
      release();
    }
  }
}
