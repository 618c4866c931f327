/**
 * How long each leg takes to answer the mirror, as histograms for status and /metrics: an
 * administrator sees which leg is slow before it times out. Only observed, never used to decide
 * anything about the leg; recording one answer is a few comparisons and an increment.
 */

/** Upper bounds (seconds) of the buckets; +Inf is implied. The export's histogram uses these. */
export const LEG_LATENCY_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  10,
];

/** A histogram as status reports it. */
export interface LatencySnapshot {
  /** Answers recorded. */
  readonly count: number;
  readonly sumSeconds: number;
  /** Cumulative counts for each bound of {@link LEG_LATENCY_BUCKETS}, then +Inf. */
  readonly buckets: readonly number[];
}

export class LatencyHistogram {
  readonly #counts = new Float64Array(LEG_LATENCY_BUCKETS.length + 1);
  #count = 0;
  #sum = 0;

  /** One answer that took `ms` milliseconds. */
  record(ms: number): void {
    const seconds = ms / 1000;
    let i = 0;
    while (i < LEG_LATENCY_BUCKETS.length && seconds > LEG_LATENCY_BUCKETS[i]!) i++;
    this.#counts[i]!++;
    this.#count++;
    this.#sum += seconds;
  }

  snapshot(): LatencySnapshot {
    let running = 0;
    return {
      count: this.#count,
      sumSeconds: this.#sum,
      buckets: Array.from(this.#counts, (n) => (running += n)),
    };
  }
}

/** The operations timed per leg: reads, changes (write, trim, zero) and flushes. */
export type LegOp = "read" | "write" | "flush";

export class LegLatency {
  readonly read = new LatencyHistogram();
  readonly write = new LatencyHistogram();
  readonly flush = new LatencyHistogram();

  snapshot(): Record<LegOp, LatencySnapshot> {
    return {
      read: this.read.snapshot(),
      write: this.write.snapshot(),
      flush: this.flush.snapshot(),
    };
  }
}
