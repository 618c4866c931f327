/**
 * I/O counters for the status endpoint: a BlockDevice wrapper that counts requests, bytes, errors
 * and latency per operation of the device a process exports, without touching the data (no copy,
 * no allocation beyond the one promise an async call costs).
 */
import type { BlockDevice, BlockInfo, Extent, ZeroOptions } from "../actors/block/contract.ts";
import { LatencyHistogram } from "../util/latency_histogram.ts";

export const IO_OPS = ["read", "write", "flush", "trim", "zero", "extents", "cache"] as const;
export type IoOp = typeof IO_OPS[number];

/** Counters of one operation. */
export class OpCounters {
  requests = 0;
  bytes = 0;
  errors = 0;
  readonly latency = new LatencyHistogram();

  record(started: number, bytes: number, failed: boolean): void {
    this.requests++;
    if (failed) this.errors++;
    else this.bytes += bytes;
    this.latency.record(performance.now() - started);
  }
}

export interface OpSnapshot {
  readonly requests: number;
  readonly bytes: number;
  readonly errors: number;
  readonly latencySeconds: number;
  /** Cumulative counts for each bound of LATENCY_BUCKETS (util/latency_histogram.ts), then +Inf. */
  readonly buckets: readonly number[];
}

export interface IoSnapshot {
  readonly inFlight: number;
  readonly ops: Readonly<Record<IoOp, OpSnapshot>>;
}

/** The counters of one exported device. */
export class IoStats {
  inFlight = 0;
  readonly ops: Readonly<Record<IoOp, OpCounters>> = Object.fromEntries(
    IO_OPS.map((op) => [op, new OpCounters()]),
  ) as Record<IoOp, OpCounters>;

  snapshot(): IoSnapshot {
    const ops = Object.fromEntries(IO_OPS.map((op) => {
      const c = this.ops[op];
      const latency = c.latency.snapshot();
      return [op, {
        requests: c.requests,
        bytes: c.bytes,
        errors: c.errors,
        latencySeconds: latency.sumSeconds,
        buckets: latency.buckets,
      }];
    })) as unknown as Record<IoOp, OpSnapshot>;
    return { inFlight: this.inFlight, ops };
  }
}

/**
 * Passes every call through to `inner`, counting it in `stats`. Wrap the device a process
 * exports (NBD or dst node) so /metrics sees what clients asked for and how long it took.
 */
export class CountingBlockDevice implements BlockDevice {
  readonly stats: IoStats;
  /** Public, so wrappers can be looked through (`mediaOf` finds the media underneath). */
  readonly inner: BlockDevice;
  readonly #ops: Readonly<Record<IoOp, OpCounters>>;

  constructor(inner: BlockDevice, stats = new IoStats()) {
    this.inner = inner;
    this.stats = stats;
    this.#ops = stats.ops;
  }

  info(): BlockInfo {
    return this.inner.info();
  }

  async read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const started = this.#begin();
    try {
      const data = await this.inner.read(offset, length, into);
      this.#end(this.#ops.read, started, length, false);
      return data;
    } catch (error) {
      this.#end(this.#ops.read, started, 0, true);
      throw error;
    }
  }

  async write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    const started = this.#begin();
    try {
      await this.inner.write(offset, data, fua);
      this.#end(this.#ops.write, started, data.length, false);
    } catch (error) {
      this.#end(this.#ops.write, started, 0, true);
      throw error;
    }
  }

  async flush(): Promise<void> {
    const started = this.#begin();
    try {
      await this.inner.flush();
      this.#end(this.#ops.flush, started, 0, false);
    } catch (error) {
      this.#end(this.#ops.flush, started, 0, true);
      throw error;
    }
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    const started = this.#begin();
    try {
      await this.inner.trim(offset, length, fua);
      this.#end(this.#ops.trim, started, length, false);
    } catch (error) {
      this.#end(this.#ops.trim, started, 0, true);
      throw error;
    }
  }

  async zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    const started = this.#begin();
    try {
      await this.inner.zero(offset, length, options);
      this.#end(this.#ops.zero, started, length, false);
    } catch (error) {
      this.#end(this.#ops.zero, started, 0, true);
      throw error;
    }
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    const started = this.#begin();
    try {
      const extents = await this.inner.extents(offset, length);
      this.#end(this.#ops.extents, started, 0, false);
      return extents;
    } catch (error) {
      this.#end(this.#ops.extents, started, 0, true);
      throw error;
    }
  }

  async cache(offset: number, length: number): Promise<void> {
    const started = this.#begin();
    try {
      await this.inner.cache(offset, length);
      this.#end(this.#ops.cache, started, length, false);
    } catch (error) {
      this.#end(this.#ops.cache, started, 0, true);
      throw error;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  #begin(): number {
    this.stats.inFlight++;
    return performance.now();
  }

  #end(op: OpCounters, started: number, bytes: number, failed: boolean): void {
    this.stats.inFlight--;
    op.record(started, bytes, failed);
  }
}
