/**
 * One leg of a mirror as the mirror sees it: its device and media, where it stands (`LegState`),
 * what it lacks, and its counters. Kept apart so routing, the bitmap, judging, resync and
 * maintenance all share one definition of a leg.
 */
import type { BlockDevice, MediaDevice, MediaState } from "../block/contract.ts";
import type { ChunkBits } from "../resync/bitmap.ts";
import type { ResyncStats } from "../resync/resync.ts";

/**
 * Where a leg stands. Only `in-sync` legs are read; writes go to `in-sync` and `rebuilding` legs.
 * `out`: failed or unreachable (its misses are tracked); `suspended`: taken out by the
 * administrator; `split-brain`: refused on return (see `reason`), never written or read.
 */
export type LegState = "in-sync" | "out" | "rebuilding" | "suspended" | "split-brain";

/** A mirror leg's mutable state, owned by the mirror. */
export interface Leg {
  readonly device: BlockDevice;
  /** Cleared when the leg turns out to keep no media state (a node answering ENOTSUP). */
  media: MediaDevice | undefined;
  readonly name: string;
  state: LegState;
  reason?: string;
  reads: number;
  writes: number;
  errors: number;
  /** Chunks this leg lacks, while it is not in sync. */
  need: ChunkBits | undefined;
  /** Last media state read or written. */
  known: MediaState | undefined;
  /** The leg's media must be stamped as a member once it is in sync. */
  adopt: boolean;
  resync: { kind: "resync" | "verify"; source: string; stats: ResyncStats } | undefined;
  resyncedBytes: number;
  copiedBytes: number;
  returning: boolean;
  removed: boolean;
}

/** A leg that is in sync and has done nothing yet. */
export function newLeg(device: BlockDevice, media: MediaDevice | undefined, name: string): Leg {
  return {
    device,
    media,
    name,
    state: "in-sync",
    reads: 0,
    writes: 0,
    errors: 0,
    need: undefined,
    known: undefined,
    adopt: false,
    resync: undefined,
    resyncedBytes: 0,
    copiedBytes: 0,
    returning: false,
    removed: false,
  };
}
