/**
 * Seeded randomness for the simulator: every stream (network, disks, workload, faults) is its
 * own generator forked from the seed by name, so one part drawing more numbers does not shift
 * what the others draw.
 */
import { SeededRandom } from "../util/random.ts";

/** A generator for `label` under `seed` (FNV-1a of both, then mulberry32). */
export function fork(seed: number, label: string): Rng {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  h = Math.imul(h, 0x01000193);
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= Math.floor(seed / 2 ** 32);
  return new Rng(h >>> 0);
}

export class Rng extends SeededRandom {
  /** True with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  /** A whole number in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }

  /** A float in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + this.next() * (hi - lo);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("pick from nothing");
    return items[this.below(items.length)]!;
  }

  /** An exponentially distributed delay with this mean. */
  exp(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
}
