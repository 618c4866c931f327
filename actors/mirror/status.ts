/**
 * What the mirror reports about each leg (for `status`, logs and the storage control API): a
 * snapshot built from a leg's internal state, so callers never see the mutable `Leg`.
 */
import type { MediaGenerations } from "../block/contract.ts";
import type { Leg } from "./leg.ts";
import type { LegOp } from "./leg_latency.ts";
import type { LatencySnapshot } from "../../util/latency_histogram.ts";
import type { LegState } from "./leg_machine.ts";

/** A resync in progress on one leg. */
export interface ResyncStatus {
  /** The leg data is copied from. */
  readonly source: string;
  readonly bytesLeft: number;
  readonly bytesDone: number;
  /** Bytes actually moved (chunks whose digests matched are skipped, not moved). */
  readonly bytesCopied: number;
  readonly rateBytesPerSec: number;
  /** Undefined while the rate is not yet known. */
  readonly etaSeconds?: number;
}

export interface LegStatus {
  readonly name: string;
  readonly state: LegState;
  /** Why the leg is where it is (why it left the in-sync set, why it was refused). */
  readonly reason?: string;
  /** Milliseconds since its last move ("down since"). */
  readonly inStateMs: number;
  /** Bumped on every move (for tests and logs). */
  readonly epoch: number;
  readonly reads: number;
  readonly writes: number;
  readonly errors: number;
  /** Bytes this leg is known to lack. */
  readonly outOfSyncBytes: number;
  readonly generations?: MediaGenerations;
  readonly storageId?: string;
  readonly resync?: ResyncStatus;
  /** Totals over every resync this leg took: bytes settled and bytes actually moved. */
  readonly resyncedBytes: number;
  readonly copiedBytes: number;
  /** How long the leg took to answer the mirror's reads, changes and flushes. */
  readonly latency: Readonly<Record<LegOp, LatencySnapshot>>;
  /**
   * When the leg last rejoined the in-sync set, and the errors seen on it since (what a view
   * shows: the lifetime `errors` is for counters).
   */
  readonly rejoined?: { readonly agoMs: number; readonly errorsSince: number };
  /** The last resync that finished: bytes settled and moved, and how long ago it ended. */
  readonly lastResync?: {
    readonly bytes: number;
    readonly copiedBytes: number;
    readonly agoMs: number;
  };
}

/** A snapshot of `leg` in a mirror of `size` bytes tracked in chunks of `chunkSize`. */
export function legStatus(leg: Leg, chunkSize: number, size: number, now: number): LegStatus {
  const { name, state, reads, writes, errors, since, epoch } = leg;
  const r = leg.resync;
  let resync: ResyncStatus | undefined;
  if (r !== undefined) {
    const left = Math.max(0, r.stats.bytesTotal - r.stats.bytesDone);
    const rate = r.stats.rateBytesPerSec;
    resync = {
      source: r.source,
      bytesLeft: left,
      bytesDone: r.stats.bytesDone,
      bytesCopied: r.stats.bytesCopied,
      rateBytesPerSec: Math.round(rate),
      ...(rate > 0 ? { etaSeconds: Math.ceil(left / rate) } : {}),
    };
  }
  const need = leg.need?.count() ?? 0;
  return {
    name,
    state,
    inStateMs: Math.max(0, Math.round(now - since)),
    epoch,
    ...(leg.reason === undefined ? {} : { reason: leg.reason }),
    reads,
    writes,
    errors,
    outOfSyncBytes: Math.min(need * chunkSize, size),
    ...(leg.known === undefined ? {} : { generations: leg.known.generations }),
    ...(leg.known?.storageId === undefined ? {} : { storageId: leg.known.storageId }),
    ...(resync === undefined ? {} : { resync }),
    resyncedBytes: leg.resyncedBytes + (r?.stats.bytesDone ?? 0),
    copiedBytes: leg.copiedBytes + (r?.stats.bytesCopied ?? 0),
    latency: leg.latency.snapshot(),
    ...(leg.rejoined === undefined ? {} : {
      rejoined: {
        agoMs: Math.max(0, Math.round(now - leg.rejoined.at)),
        errorsSince: errors - leg.rejoined.errors,
      },
    }),
    ...(leg.lastResync === undefined ? {} : {
      lastResync: {
        bytes: leg.lastResync.bytes,
        copiedBytes: leg.lastResync.copied,
        agoMs: Math.max(0, Math.round(now - leg.lastResync.at)),
      },
    }),
  };
}
