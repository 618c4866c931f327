/**
 * Simulated time for a whole system in one process: one virtual clock whose timers fire in due
 * order (ties broken by the seed), a clock per simulated process that can be killed with
 * everything it armed, and the driver loop that lets every promise settle between two events.
 * Nothing here reads the real clock; the only real thing used is a host turn (`setImmediate`),
 * to let pending promises run before the next simulated event.
 */
import { setImmediate } from "node:timers";
import type { Clock, Timer } from "../util/clock.ts";
import type { SeededRandom } from "../util/random.ts";

/** One armed timer. `fn` is cleared when it fires or is cancelled. */
interface Entry {
  readonly at: number;
  /** Tie-break among timers due at the same instant: drawn from the seed. */
  readonly tie: number;
  readonly seq: number;
  fn: (() => void) | undefined;
}

/** A seed ran into one of the sim's own bounds (time, steps): it cannot run forever. */
export class SimLimitError extends Error {
  override readonly name = "SimLimitError";
}

const NEVER: Timer = { cancel() {} };

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && (a.tie < b.tie || (a.tie === b.tie && a.seq < b.seq)));
}

/** Virtual time and its timers (a binary heap; cancelled entries are dropped when they surface). */
export class SimClock {
  #now = 0;
  #seq = 0;
  readonly #heap: Entry[] = [];
  /** Timers fired so far. */
  fired = 0;

  constructor(readonly random: SeededRandom) {}

  now(): number {
    return this.#now;
  }

  /** Arms `fn` to run `ms` from now. */
  schedule(ms: number, fn: () => void): Entry {
    const entry: Entry = {
      at: this.#now + (ms > 0 ? ms : 0),
      tie: this.random.next(),
      seq: this.#seq++,
      fn,
    };
    const heap = this.#heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
    return entry;
  }

  /** When the next live timer is due, if any. */
  nextAt(): number | undefined {
    while (this.#heap.length > 0 && this.#heap[0]!.fn === undefined) this.#pop();
    return this.#heap[0]?.at;
  }

  /** Moves time to the next live timer and runs it; false when none is armed. */
  fireNext(): boolean {
    if (this.nextAt() === undefined) return false;
    const entry = this.#pop();
    this.#now = Math.max(this.#now, entry.at);
    const fn = entry.fn!;
    entry.fn = undefined;
    this.fired++;
    fn();
    return true;
  }

  /** Moves time forward to `at` without firing anything (nothing is due before it). */
  jumpTo(at: number): void {
    if (at > this.#now) this.#now = at;
  }

  #pop(): Entry {
    const heap = this.#heap;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * The clock one simulated process sees. Killing it cancels every timer the process armed and
 * ignores new ones: a crashed process runs nothing more by itself.
 */
export class ProcessClock implements Clock {
  readonly #live = new Set<Entry>();
  #alive = true;

  constructor(readonly sim: SimClock) {}

  get alive(): boolean {
    return this.#alive;
  }

  now(): number {
    return this.sim.now();
  }

  setTimeout(fn: () => void, ms: number): Timer {
    if (!this.#alive) return NEVER;
    const live = this.#live;
    const entry = this.sim.schedule(ms, () => {
      live.delete(entry);
      fn();
    });
    live.add(entry);
    return {
      cancel: () => {
        entry.fn = undefined;
        live.delete(entry);
      },
    };
  }

  kill(): void {
    this.#alive = false;
    for (const entry of this.#live) entry.fn = undefined;
    this.#live.clear();
  }
}

/** A host turn: every promise already settled runs its reactions before this resolves. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface DriverLimits {
  /** Host turns at most, over the whole seed. */
  readonly maxSteps: number;
}

/**
 * Runs the simulation: between two events every pending reaction runs (a host turn), queued
 * actor turns run in order, then the next timer fires. Bounded by steps and by the time asked.
 */
export class Driver {
  readonly clock: SimClock;
  readonly #yields: { alive: () => boolean; fn: () => void }[] = [];
  steps = 0;

  constructor(clock: SimClock, readonly limits: DriverLimits) {
    this.clock = clock;
  }

  /** The `yieldToHost` of a process's actor system: its turn comes after pending reactions. */
  yielder(clock: ProcessClock): (fn: () => void) => void {
    return (fn) => {
      if (clock.alive) this.#yields.push({ alive: () => clock.alive, fn });
    };
  }

  /**
   * Runs until `done()` holds (checked between events) or time reaches `until`; resolves with
   * whether `done()` held. Throws SimLimitError past the step bound.
   */
  async run(until: number, done: () => boolean = () => false): Promise<boolean> {
    for (;;) {
      await turn();
      if (++this.steps > this.limits.maxSteps) {
        throw new SimLimitError(`more than ${this.limits.maxSteps} steps`);
      }
      if (this.#yields.length > 0) {
        const batch = this.#yields.splice(0);
        for (const y of batch) if (y.alive()) y.fn();
        continue;
      }
      if (done()) return true;
      const at = this.clock.nextAt();
      if (at === undefined || at > until) {
        this.clock.jumpTo(until);
        return done();
      }
      this.clock.fireNext();
    }
  }
}
