/**
 * A clock whose timers are grouped into buckets of a few milliseconds on one host timer. Request
 * deadlines (a mirror leg's timeout, a remote node's request timeout) are set and cancelled on
 * every request but almost never fire; a host timer costs about 1.3 µs to set and cancel, a
 * bucket entry a map operation. A deadline fires up to `granularityMs` late, never early.
 */
import { type Clock, systemClock, type Timer } from "./clock.ts";

interface Entry {
  fn: (() => void) | undefined;
}

export class CoarseClock implements Clock {
  readonly #buckets = new Map<number, Set<Entry>>();
  /** Due times with a bucket, ascending (deadlines mostly grow, so inserts are near the end). */
  readonly #dues: number[] = [];
  #live = 0;
  #timer: Timer | undefined;
  #armedFor = Infinity;

  constructor(readonly base: Clock, readonly granularityMs = 5) {
    if (!(granularityMs > 0)) throw new RangeError("granularity must be above 0 ms");
  }

  now(): number {
    return this.base.now();
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const g = this.granularityMs;
    const due = Math.ceil((this.base.now() + Math.max(0, ms)) / g) * g;
    let bucket = this.#buckets.get(due);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(due, bucket);
      let at = this.#dues.length;
      while (at > 0 && this.#dues[at - 1]! > due) at--;
      this.#dues.splice(at, 0, due);
    }
    const entry: Entry = { fn };
    bucket.add(entry);
    this.#live++;
    if (due < this.#armedFor) this.#arm(due);
    const owner = bucket;
    return {
      cancel: () => {
        if (entry.fn === undefined) return;
        entry.fn = undefined;
        owner.delete(entry);
        // Idle: let the host timer go, so nothing keeps the process (or a test) waiting.
        if (--this.#live === 0) this.#disarm();
      },
    };
  }

  /** Timers set and neither fired nor cancelled. */
  get pending(): number {
    return this.#live;
  }

  #arm(due: number): void {
    this.#timer?.cancel();
    this.#armedFor = due;
    this.#timer = this.base.setTimeout(() => this.#expire(), due - this.base.now());
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#buckets.clear();
    this.#dues.length = 0;
  }

  #expire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.base.now();
    while (this.#dues.length > 0 && this.#dues[0]! <= now) {
      const due = this.#dues.shift()!;
      const bucket = this.#buckets.get(due)!;
      this.#buckets.delete(due);
      for (const entry of bucket) {
        const fn = entry.fn;
        if (fn === undefined) continue;
        entry.fn = undefined;
        this.#live--;
        fn();
      }
    }
    const next = this.#dues[0];
    if (next !== undefined && this.#live > 0) this.#arm(next);
    else if (this.#live === 0) this.#disarm();
  }
}

/** The process's shared coarse clock over the real one, for per-request deadlines. */
export const coarseSystemClock: CoarseClock = new CoarseClock(systemClock, 5);
