/**
 * How long each leg takes to answer the mirror, as histograms for status and /metrics: an
 * administrator sees which leg is slow before it times out. Only observed, never used to decide
 * anything about the leg (util/latency_histogram.ts: the buckets every dst histogram shares).
 */
import { LatencyHistogram, type LatencySnapshot } from "../../util/latency_histogram.ts";

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
