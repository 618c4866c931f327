/**
 * Latency histograms in the buckets every dst histogram shares (the export's per-operation
 * latency and each mirror leg's), so /metrics can compare them bucket for bucket. Recording
 * one answer is a few comparisons and an increment.
 */

/** Upper bounds (seconds) of the buckets; +Inf is implied. */
export const LATENCY_BUCKETS: readonly number[] = [
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
  /** Cumulative counts for each bound of {@link LATENCY_BUCKETS}, then +Inf. */
  readonly buckets: readonly number[];
}

export class LatencyHistogram {
  readonly #counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  #count = 0;
  #sum = 0;

  /** One answer that took `ms` milliseconds. */
  record(ms: number): void {
    const seconds = ms / 1000;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
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
