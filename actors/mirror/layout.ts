/**
 * The seam between the mirror's leg machinery (one owner of leg state, bitmap, generations,
 * resync actors, maintenance) and how data is laid out over the legs. A mirror keeps every byte
 * on every leg; another layout (parity, actors/parity/) keeps it once plus parity, and differs
 * only in what this interface names: the device's size, how client I/O fans out over the legs,
 * how a chunk of one leg is recreated, what verify compares, how many legs must be in sync to
 * serve, and what a start does with chunks whose writes may have been cut short.
 *
 * Bitmap chunks stay in the legs' address space: chunk c is leg bytes [c·chunk, (c+1)·chunk) on
 * every leg, which covers logical bytes [c·span, (c+1)·span).
 */
import type { BlockInfo, Extent, ZeroOptions } from "../block/contract.ts";
import { combineInfo } from "../block/info.ts";
import type { ChunkBits } from "./chunk_bits.ts";
import type { MirrorCore } from "./core.ts";
import type { Leg } from "./leg.ts";
import type { ResyncSide } from "./resync_copy.ts";
import type { ActionDone } from "./maintenance.ts";

/** Client I/O of a layout; the mirror's own is in reads.ts and writes.ts. */
export interface LayoutIo {
  read(core: MirrorCore, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  write(core: MirrorCore, offset: number, data: Uint8Array, fua: boolean): Promise<void>;
  flush(core: MirrorCore): Promise<void>;
  trim(core: MirrorCore, offset: number, length: number, fua: boolean): Promise<void>;
  zero(core: MirrorCore, offset: number, length: number, options: ZeroOptions): Promise<void>;
  extents(core: MirrorCore, offset: number, length: number): Promise<Extent[]>;
  cache(core: MirrorCore, offset: number, length: number): Promise<void>;
}

/**
 * Recreates leg bytes [offset, offset+length) (one chunk) on `target` from the other legs;
 * resolves false when the target held those bytes already (nothing was written).
 */
export type Recreate = (target: ResyncSide, offset: number, length: number) => Promise<boolean>;

export interface Layout {
  /** "mirror" or "parity": for messages. */
  readonly kind: string;
  /** The device a storage over legs of these infos offers. */
  info(legs: readonly BlockInfo[]): BlockInfo;
  /** What every leg must offer to serve a device of `info` (its size: the leg bytes used). */
  legNeeds(info: BlockInfo): BlockInfo;
  /** In-sync legs needed to serve (and to rebuild one leg from), out of `legs`. */
  needInSync(legs: number): number;
  /** Client I/O; undefined: the mirror's. */
  readonly io?: LayoutIo;
  /** How a rebuilding leg's chunk is recreated; undefined: copied from one in-sync leg. */
  recreate?(core: MirrorCore): Recreate;
  /** Online verify (its report and message); undefined: the mirror's digest comparison. */
  verify?(core: MirrorCore, repairFrom?: string): Promise<ActionDone>;
  /**
   * At start, once `reference` (legs at one generation) is chosen and `union` holds every chunk
   * a stored bitmap marks (`cleanly`: every reference leg stopped cleanly): judges the reference
   * legs after the first itself. Undefined: the mirror's (the others resync the marked chunks).
   */
  reconcile?(
    core: MirrorCore,
    reference: readonly Leg[],
    union: ChunkBits,
    cleanly: boolean,
  ): Promise<void>;
  /** A new storage on media that is not blank: every reachable leg is a reference (parity). */
  readonly everyLegNew?: boolean;
  /** Legs cannot be added or removed while serving; the reason says why. */
  readonly fixedLegs?: string;
}

/** The mirror: every leg holds every byte; the smallest leg bounds the size. */
export const mirrorLayout: Layout = {
  kind: "mirror",
  info: (legs) => ({ ...combineInfo(legs), size: Math.min(...legs.map((i) => i.size)) }),
  legNeeds: (info) => info,
  needInSync: () => 1,
};

/** A leg a recreate read from failed (the resync reports it; the mirror fails that leg). */
export class SourceFailed extends Error {
  constructor(readonly side: ResyncSide, override readonly cause: unknown) {
    super(`${side.name}: ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = "SourceFailed";
  }
}
