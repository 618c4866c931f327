/**
 * I/O counters for the status endpoint: a BlockDevice wrapper that counts requests, bytes, errors
 * and latency per operation of the device a process exports, without touching the data (no copy,
 * no allocation beyond the one promise an async call costs).
 */
import type { BlockDevice, BlockInfo, Extent, ZeroOptions } from "../actors/block/contract.ts";

export const IO_OPS = ["read", "write", "flush", "trim", "zero", "extents", "cache"] as const;
export type IoOp = typeof IO_OPS[number];

/** Upper bounds (seconds) of the latency histogram's buckets; +Inf is implied. */
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

/** Counters of one operation; latency buckets are per bucket here (not yet cumulative). */
export class OpCounters {
  requests = 0;
  bytes = 0;
  errors = 0;
  /** Sum of latencies, seconds. */
  seconds = 0;
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);

  record(started: number, bytes: number, failed: boolean): void {
    const seconds = (performance.now() - started) / 1000;
    this.requests++;
    this.seconds += seconds;
    if (failed) this.errors++;
    else this.bytes += bytes;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
  }
}

export interface OpSnapshot {
  readonly requests: number;
  readonly bytes: number;
  readonly errors: number;
  readonly latencySeconds: number;
  /** Cumulative counts for each bound of {@link LATENCY_BUCKETS}, then +Inf. */
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
      let sum = 0;
      const buckets = Array.from(c.buckets, (n) => (sum += n));
      return [op, {
        requests: c.requests,
        bytes: c.bytes,
        errors: c.errors,
        latencySeconds: c.seconds,
        buckets,
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
