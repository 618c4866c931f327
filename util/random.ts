/**
 * Randomness comes in through this interface, never from `Math.random` inside the system, so a
 * run can be replayed from its seed.
 */

export interface Random {
  /** A float in [0, 1). */
  next(): number;
}

/** A small, fast, seeded generator (mulberry32); good enough for jitter and fault injection. */
export class SeededRandom implements Random {
  #state: number;

  constructor(readonly seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A whole number in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** The host's generator, for production runs that need no replay. */
export const systemRandom: Random = { next: () => Math.random() };
