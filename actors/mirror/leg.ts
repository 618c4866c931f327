/**
 * One leg of a mirror as the mirror sees it: its device and media, where it stands, the epoch of
 * that standing, what it lacks, and its counters. The record belongs to the mirror's core
 * (core.ts) alone: only its dispatch changes `state`, `epoch`, `reason` and `since`.
 */
import type { BlockDevice, MediaDevice, MediaState } from "../block/contract.ts";
import type { ChunkBits } from "./chunk_bits.ts";
import { InFlight } from "./in_flight.ts";
import { LegLatency } from "./leg_latency.ts";
import type { LegState } from "./leg_machine.ts";
import type { ResyncStats } from "./resync_copy.ts";

/** A mirror leg's state; see leg_machine.ts for how it moves. */
export interface Leg {
  readonly name: string;
  readonly device: BlockDevice;
  /** Cleared when the leg turns out to keep no media state (a node answering ENOTSUP). */
  media: MediaDevice | undefined;
  /** Changed only by the core's dispatch (core.ts), through the transition function. */
  readonly state: LegState;
  /**
   * Bumped on every transition. Work started under one epoch (a judgment, a resync, a slow
   * write) carries it, and its result is dropped when the leg has moved on since.
   */
  readonly epoch: number;
  /** Why the leg is where it is, when that needs saying. */
  readonly reason: string | undefined;
  /** Clock time of the last transition ("down since"). */
  readonly since: number;
  /**
   * Chunks this leg lacks: undefined exactly while it is in sync (and before its first
   * judgment). Bits are set by the core only (misses, moves) and cleared by its resync.
   */
  need: ChunkBits | undefined;
  /** Last media state read or written. */
  known: MediaState | undefined;
  /** Its media must be stamped as a member of this storage once it holds every chunk. */
  adopt: boolean;
  /** The resync running for it: progress as its actor last reported. */
  resync: { source: string; stats: ResyncStats } | undefined;
  reads: number;
  writes: number;
  errors: number;
  /** Totals over every resync this leg took: bytes settled and bytes actually moved. */
  resyncedBytes: number;
  copiedBytes: number;
  /** How long its answers took (observed for status only; nothing decides on it). */
  readonly latency: LegLatency;
  /** For status only: when the leg last moved to in-sync, and its error count then. */
  rejoined: { readonly at: number; readonly errors: number } | undefined;
  /** For status only: the last resync that finished (bytes settled, moved, when it ended). */
  lastResync: { readonly bytes: number; readonly copied: number; readonly at: number } | undefined;
  /**
   * Its requests not answered yet (counted below `device` and `media`, see in_flight.ts): it is
   * judged only once those sent before have settled, so none lands over a later resync.
   */
  readonly flight: InFlight;
}

/** A leg that has done nothing yet, waiting for the mirror's start to judge it. */
export function newLeg(
  name: string,
  device: BlockDevice,
  media: MediaDevice | undefined,
  now: number,
  flight: InFlight = new InFlight(),
): Leg {
  return {
    name,
    device,
    media,
    state: "judging",
    epoch: 0,
    reason: undefined,
    since: now,
    need: undefined,
    known: undefined,
    adopt: false,
    resync: undefined,
    reads: 0,
    writes: 0,
    errors: 0,
    resyncedBytes: 0,
    copiedBytes: 0,
    latency: new LegLatency(),
    rejoined: undefined,
    lastResync: undefined,
    flight,
  };
}

/** Legs that take writes: the in-sync ones and the ones a resync is filling. */
export function takesWrites(leg: Leg): boolean {
  return leg.state === "in-sync" || leg.state === "rebuilding";
}
