/**
 * Time comes in through this interface, never from globals, so a seeded simulated scheduler can
 * drive actors, transports and timeouts deterministically.
 */

/** A cancellable timer handle. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds on a monotonic scale (not wall time). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): Timer;
}

/** Longest delay the host's timers take (a longer one fires at once, with a warning). */
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * The real clock: `performance.now()` and the host's timers. A deadline already past (a negative
 * delay) fires at once, as callers mean; passed as is, Deno's Node-compatible timers would print
 * a TimeoutNegativeWarning on stderr.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const id = setTimeout(fn, ms > 0 ? Math.min(MAX_DELAY_MS, ms) : 0);
    return { cancel: () => clearTimeout(id) };
  },
};

/** A clock that moves only when told to; timers fire in due order during {@link advance}. */
export class ManualClock implements Clock {
  #now = 0;
  #seq = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const id = this.#seq++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return { cancel: () => this.#timers.delete(id) };
  }

  /** Number of timers not yet fired or cancelled. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= until && (next === undefined || entry[1].at < next[1].at)) next = entry;
      }
      if (next === undefined) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
    }
    this.#now = until;
  }
}
