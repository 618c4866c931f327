/**
 * Generation ids and the decision table run whenever a leg (re)joins a mirror, after DRBD's
 * generation identifiers: the current id changes whenever legs start taking writes that another
 * leg misses, the bitmap id remembers where the write-intent bitmap started tracking, and the
 * history keeps earlier current ids. Comparing a returning leg with the legs that serve says
 * whether it is up to date, behind (what it missed is in the bitmap, or it needs everything), or
 * holds writes the serving legs never saw (split brain) or data of some other lineage — the last
 * two are refused and reported, never resolved by overwriting.
 */
import { createHash } from "node:crypto";
import type { MediaGenerations, MediaState } from "../block/contract.ts";
import { HISTORY_SLOTS, MEDIA_FLAG_BLANK, NO_GENERATION } from "../block/media.ts";

/** Media flag: this media holds the storage's data (its age is stamped); else it is new. */
export const FLAG_MEMBER = 1;
/**
 * Media flag: a resync to this media is under way (or was interrupted): its data is only good
 * where its stored bitmap says so. Such a leg is never a reference and never served until a
 * resync from a consistent leg finishes (DRBD's "Inconsistent" disk state).
 */
export const FLAG_INCONSISTENT = 2;
/**
 * Media flag: the mirror stopped cleanly while this leg was in sync (every write it took was
 * acknowledged and flushed: no write was cut short). Legs that agree on a generation and all
 * carry it hold the same data; cleared by the next start's stamp, before any write.
 */
export const FLAG_CLEAN_STOP = 4;
/** Media flag bits 8..15: log2 of the chunk size the stored bitmap is kept in. */
export const FLAG_CHUNK_SHIFT = 8;

export function memberFlags(chunkSize: number): number {
  return FLAG_MEMBER | (Math.log2(chunkSize) << FLAG_CHUNK_SHIFT);
}

/** Flags of a member that is the target of a resync. */
export function targetFlags(chunkSize: number): number {
  return memberFlags(chunkSize) | FLAG_INCONSISTENT;
}

/** Did the mirror stop cleanly while this leg was in sync? */
export function stoppedCleanly(state: MediaState | undefined): boolean {
  return state !== undefined && (state.flags & FLAG_CLEAN_STOP) !== 0;
}

/** Is the media a resync target whose resync has not finished? */
export function isInconsistent(state: MediaState | undefined): boolean {
  return state !== undefined && (state.flags & FLAG_INCONSISTENT) !== 0;
}

/** The chunk size a member's stored bitmap is kept in, or undefined when not recorded. */
export function bitmapChunkOf(flags: number): number | undefined {
  const shift = (flags >>> FLAG_CHUNK_SHIFT) & 0xff;
  return shift === 0 ? undefined : 2 ** shift;
}

export type Decision =
  /** Same current id: only chunks marked in a bitmap (interrupted writes) may differ. */
  | { readonly kind: "same" }
  /** The leg is an ancestor of the serving legs: it needs the bitmap's chunks. */
  | { readonly kind: "bitmap" }
  /** The leg is behind further than the bitmap reaches, or new: it needs every chunk. */
  | { readonly kind: "full"; readonly why: string }
  /** The serving legs are behind the leg: it holds writes they never saw. */
  | { readonly kind: "newer"; readonly why: string }
  /** Both sides took writes apart from each other. */
  | { readonly kind: "split-brain"; readonly why: string }
  /** No common history: media of something else. */
  | { readonly kind: "unrelated"; readonly why: string };

/** Known ids of `g` newer than or equal to its bitmap id (the span the bitmap covers). */
function coveredByBitmap(g: MediaGenerations): string[] {
  if (g.bitmap === NO_GENERATION) return [];
  const at = g.history.indexOf(g.bitmap);
  return at < 0 ? [g.bitmap] : [...g.history.slice(0, at + 1)];
}

function known(g: MediaGenerations): string[] {
  return [g.current, g.bitmap, ...g.history].filter((id) => id !== NO_GENERATION);
}

/**
 * Decides how leg `leg` relates to the serving (reference) legs `ref`, both already known to be
 * members of the storage. Symmetric rows are spelled out so each is tested.
 */
export function decide(ref: MediaGenerations, leg: MediaGenerations): Decision {
  if (leg.current === NO_GENERATION) return { kind: "full", why: "the leg's media is new" };
  if (ref.current === leg.current) return { kind: "same" };
  if (coveredByBitmap(ref).includes(leg.current)) return { kind: "bitmap" };
  if (ref.history.includes(leg.current)) {
    return { kind: "full", why: "the leg is older than the bitmap reaches" };
  }
  if (coveredByBitmap(leg).includes(ref.current) || leg.history.includes(ref.current)) {
    return {
      kind: "newer",
      why: `the leg (generation ${leg.current}) holds writes the serving legs ` +
        `(generation ${ref.current}) never saw`,
    };
  }
  const common = known(ref).filter((id) => known(leg).includes(id));
  if (common.length > 0) {
    return {
      kind: "split-brain",
      why: `split brain: the leg (generation ${leg.current}) and the serving legs ` +
        `(generation ${ref.current}) were both written after parting at ${common[0]}; ` +
        `nothing is overwritten: mark one side dirty to resync it from the other`,
    };
  }
  return {
    kind: "unrelated",
    why: `unrelated data: the leg's generations (${leg.current}) share no history with the ` +
      `serving legs' (${ref.current}); mark it dirty to resync it in full`,
  };
}

/** Has the media's data never been written since it was formatted (it reads as zeros)? */
export function isBlank(state: MediaState | undefined): boolean {
  return state !== undefined && (state.flags & MEDIA_FLAG_BLANK) !== 0;
}

/** Is the media a member of storage `storageId` (its age stamped)? */
export function isMember(state: MediaState | undefined, storageId: string | undefined): boolean {
  return state !== undefined && (state.flags & FLAG_MEMBER) !== 0 &&
    state.generations.current !== NO_GENERATION &&
    (storageId === undefined || state.storageId === storageId);
}

/**
 * New generations for legs that start taking writes another leg misses: a new current id; the
 * bitmap id is kept when the bitmap already tracks, else it becomes the old current.
 */
export function rotate(g: MediaGenerations, fresh: string): MediaGenerations {
  return {
    current: fresh,
    bitmap: g.bitmap === NO_GENERATION ? g.current : g.bitmap,
    history: [g.current, ...g.history].slice(0, HISTORY_SLOTS),
  };
}

/** Generations once every leg holds every chunk: the bitmap tracks nothing. */
export function settle(g: MediaGenerations): MediaGenerations {
  return { ...g, bitmap: NO_GENERATION };
}

/**
 * The id a mirror records for its leg named `name` among the outdated legs on its media: 32 hex
 * digits of the name's SHA-256 (names are the operator's, of any length).
 */
export function legId(name: string): string {
  return createHash("sha256").update(name).digest("hex").slice(0, 32);
}
