/**
 * One resync: brings a returning leg up to date by copying the chunks it needs from an in-sync
 * leg. Each chunk is copied under the mirror's range lock, so a client write to the same bytes
 * runs wholly before or after the copy and a copy never overwrites newer data; chunks whose
 * digests already match (computed on the nodes) are skipped without moving data. The pace sits
 * between a floor and a ceiling, backing off toward the floor while clients are busy. Progress is
 * the needed-chunk bitset itself: the resync actor (resync_actor.ts) reports landed chunks once
 * the target flushed them, and the mirror clears and stores their bits, so a resync that dies
 * resumes from there. Every leg operation runs under the mirror's leg deadline.
 */
import type { BlockDevice, MediaDevice } from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";
import type { ChunkBits } from "./chunk_bits.ts";
import { type Recreate, SourceFailed } from "./layout.ts";

export interface ResyncPace {
  /** Never slower than this while there is work (default 32 MiB/s). */
  readonly floorBytesPerSec?: number;
  /** Never faster than this (default 4 GiB/s). */
  readonly ceilingBytesPerSec?: number;
  /** Chunks copied at once (default 4). */
  readonly parallel?: number;
}

export interface ResyncSide {
  readonly name: string;
  readonly device: BlockDevice;
  readonly media: MediaDevice | undefined;
  /** The side's epoch when it was picked: a failure is blamed on that leg life only. */
  readonly epoch: number;
}

export interface ResyncJob {
  readonly source: () => ResyncSide | undefined;
  readonly target: ResyncSide;
  /** Chunks the target needs; the job clears each one it settles (through `landed`). */
  readonly need: ChunkBits;
  /** Recreates a chunk on the target (parity); undefined: copy it from `source()`. */
  readonly recreate?: Recreate;
  readonly chunkSize: number;
  readonly size: number;
  /** Runs `fn` holding the mirror's range lock over what these leg bytes carry. */
  readonly lock: <T>(offset: number, length: number, fn: () => Promise<T>) => Promise<T>;
  /** False once the job must stop (the leg failed, was suspended or removed). */
  readonly wanted: () => boolean;
  /** The source failed a read: the mirror fails that leg, and the next `source()` is another. */
  readonly sourceFailed: (source: ResyncSide, error: unknown) => void;
  /** A chunk now holds the source's data on the target. */
  readonly landed: (chunk: number) => void;
  /** Client requests seen so far (a counter); a rising count means clients are busy. */
  readonly clientOps: () => number;
  /** Bounds a leg operation by the mirror's leg deadline. */
  readonly timed: <T>(side: ResyncSide, op: Promise<T>) => Promise<T>;
  readonly clock: Clock;
  readonly pace: ResyncPace;
}

export interface ResyncStats {
  bytesTotal: number;
  bytesDone: number;
  bytesCopied: number;
  chunksSkipped: number;
  startedAt: number;
  rateBytesPerSec: number;
}

/** A source's read failed (as opposed to the target's write). */
class SourceFailure extends Error {
  constructor(override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

const fromSource = (error: unknown): never => {
  throw new SourceFailure(error);
};

/** Chunks compared before a resync that skipped none gives up on digests. */
const DIGEST_PROBE_CHUNKS = 16;

export class ResyncAborted extends Error {
  constructor(why: string) {
    super(why);
    this.name = "ResyncAborted";
  }
}

/** Copies every needed chunk; resolves when done, rejects when a side fails or it is stopped. */
export async function runResync(job: ResyncJob, stats: ResyncStats): Promise<void> {
  const ceiling = job.pace.ceilingBytesPerSec ?? 4 * 1024 * 1024 * 1024;
  const floor = Math.min(ceiling, job.pace.floorBytesPerSec ?? 32 * 1024 * 1024);
  const parallel = Math.max(1, job.pace.parallel ?? 4);
  const clock = job.clock;
  let cursor = 0;
  let windowStart = clock.now();
  let windowBytes = 0;
  let lastOps = job.clientOps();
  let target = ceiling;
  // Digests pay only where chunks often match (a leg that missed a little, a resumed resync).
  // Where the first chunks all differ (new media), they cost a second read of every chunk on
  // both sides for nothing: stop comparing and just copy.
  let compared = 0;
  let useDigests = true;

  const copyFrom = async (source: ResyncSide, offset: number, length: number): Promise<void> => {
    if (useDigests && source.media !== undefined && job.target.media !== undefined) {
      const [a, b] = await Promise.all([
        job.timed(source, source.media.digest(offset, length, job.chunkSize)).catch(fromSource),
        job.timed(job.target, job.target.media.digest(offset, length, job.chunkSize)),
      ]);
      if (a.length === b.length && a.every((x, i) => x === b[i])) {
        stats.chunksSkipped++;
        return;
      }
      if (++compared >= DIGEST_PROBE_CHUNKS && stats.chunksSkipped === 0) useDigests = false;
    }
    const data = await job.timed(source, source.device.read(offset, length)).catch(fromSource);
    await job.timed(job.target, job.target.device.write(offset, data, false));
    stats.bytesCopied += length;
  };

  const copyOne = async (chunk: number): Promise<void> => {
    const offset = chunk * job.chunkSize;
    const length = Math.min(job.chunkSize, job.size - offset);
    await job.lock(offset, length, async () => {
      if (job.recreate !== undefined) return await recreateOne(job, offset, length, stats);
      // A source that fails hands over to the next in-sync leg: the resync goes on, not over.
      for (;;) {
        if (!job.wanted()) throw new ResyncAborted("stopped");
        const source = job.source();
        if (source === undefined) throw new ResyncAborted("no in-sync leg to copy from");
        try {
          await copyFrom(source, offset, length);
          return;
        } catch (error) {
          if (!(error instanceof SourceFailure)) throw error;
          job.sourceFailed(source, error.cause);
        }
      }
    });
    job.landed(chunk);
    stats.bytesDone += length;
    windowBytes += length;
  };

  const worker = async (): Promise<void> => {
    for (;;) {
      if (!job.wanted()) throw new ResyncAborted("stopped");
      const chunk = job.need.next(cursor);
      if (chunk < 0) return;
      cursor = chunk + 1;
      await copyOne(chunk);
      // Pace: a client busy since last look pulls the target toward the floor.
      const ops = job.clientOps();
      target = ops !== lastOps ? Math.max(floor, target / 2) : Math.min(ceiling, target * 2);
      lastOps = ops;
      const elapsed = Math.max(1, clock.now() - windowStart);
      stats.rateBytesPerSec = (stats.bytesDone / Math.max(1, clock.now() - stats.startedAt)) * 1000;
      const earliest = (windowBytes / target) * 1000;
      if (earliest > elapsed) {
        await new Promise<void>((r) => clock.setTimeout(r, Math.min(1000, earliest - elapsed)));
      }
      if (elapsed > 1000) {
        windowStart = clock.now();
        windowBytes = 0;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  stats.rateBytesPerSec = (stats.bytesDone / Math.max(1, clock.now() - stats.startedAt)) * 1000;
}

/** Recreates one chunk through the layout; a leg it read from that failed is reported. */
async function recreateOne(
  job: ResyncJob,
  offset: number,
  length: number,
  stats: ResyncStats,
): Promise<void> {
  if (!job.wanted()) throw new ResyncAborted("stopped");
  let written: boolean;
  try {
    written = await job.recreate!(job.target, offset, length);
  } catch (error) {
    if (!(error instanceof SourceFailed)) throw error;
    job.sourceFailed(error.side, error.cause);
    throw new ResyncAborted(`${error.side.name} failed a read the rebuild needs`);
  }
  if (written) stats.bytesCopied += length;
  else stats.chunksSkipped++;
}
