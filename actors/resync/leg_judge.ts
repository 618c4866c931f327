/**
 * Judging a mirror leg that comes back (or is judged at start): reads its media, runs the
 * decision table (generations.ts) against the mirror's generations, and starts its resync or
 * refuses it as split brain; takes back the last in-sync leg when the mirror went down. The
 * mirror's internals it needs come through `LegJudgeHost`.
 */
import type { MediaState } from "../block/contract.ts";
import type { Logger } from "../../util/log.ts";
import { ChunkBits, rechunk } from "./bitmap.ts";
import { bitmapChunkOf, decide, isInconsistent, isMember } from "./generations.ts";
import { describe } from "../mapping/mirror_errors.ts";
import type { MirrorGenerations } from "../mapping/mirror_generations.ts";
import type { Leg, LegState } from "../mapping/mirror_leg.ts";
import type { WriteIntentBitmap } from "../mapping/write_intent_bitmap.ts";

/** What judging a leg needs of the mirror. */
export interface LegJudgeHost {
  readonly legs: readonly Leg[];
  readonly size: number;
  readonly chunks: number;
  readonly chunkSize: number;
  readonly bitmap: WriteIntentBitmap;
  readonly gen: MirrorGenerations;
  readonly logger: Logger;
  readonly inSync: number;
  readonly closed: boolean;
  /**
   * Set when the last in-sync leg left (the mirror went down): that leg, and the current
   * generation ids its media may carry.
   */
  readonly down: { leg: Leg; currents: ReadonlySet<string> } | undefined;
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  setState(leg: Leg, state: LegState, reason: string | undefined): void;
  /** Starts the resync of a leg whose needs are set (from any in-sync leg). */
  resync(leg: Leg): Promise<void>;
}

/** The leg's stored bitmap, in this mirror's chunks (undefined when it has none). */
export async function loadBits(host: LegJudgeHost, leg: Leg): Promise<ChunkBits | undefined> {
  if (leg.media === undefined || leg.known === undefined || !isMember(leg.known, undefined)) {
    return undefined;
  }
  try {
    const raw = await leg.media.readBitmap();
    const stored = bitmapChunkOf(leg.known.flags) ?? host.chunkSize;
    const chunks = Math.ceil(host.size / stored);
    const bits = new ChunkBits(chunks, raw);
    return stored === host.chunkSize
      ? new ChunkBits(host.chunks, bits.bytes)
      : rechunk(bits, stored, host.chunkSize, host.chunks);
  } catch (error) {
    host.logger.log("warn", "cannot read a leg's bitmap", {
      leg: leg.name,
      error: describe(error),
    });
    return undefined;
  }
}

/**
 * Decides what a leg that is out needs (the decision table) and starts its resync, or refuses
 * it as split brain. `atStart`: judged before serving, against the reference generations.
 */
export async function judgeLeg(host: LegJudgeHost, leg: Leg, atStart: boolean): Promise<void> {
  if (leg.returning || leg.state !== "out" || host.closed) return;
  leg.returning = true;
  try {
    let state: MediaState | undefined;
    if (leg.media !== undefined) {
      try {
        state = await host.timed(leg, leg.media.media());
      } catch (error) {
        leg.reason = `unreachable: ${describe(error)}`;
        return;
      }
      leg.known = state;
      if (host.down?.leg === leg && host.inSync === 0 && await readmit(host, leg, state)) return;
    } else if (!atStart) {
      // Without media nothing tells what the leg holds: probe it and copy everything.
      try {
        await host.timed(leg, leg.device.read(0, Math.min(4096, host.size)));
      } catch {
        return;
      }
      leg.need = ChunkBits.full(host.chunks);
    } else {
      leg.state = "in-sync";
      return;
    }
    // With media but no reference generations, a split brain is unresolved: nothing to judge.
    if (leg.media !== undefined && host.gen.current === undefined) return;
    let need: ChunkBits;
    if (leg.media !== undefined && (leg.adopt || !isMember(state, host.gen.storageId))) {
      need = ChunkBits.full(host.chunks);
      leg.adopt = true;
      host.logger.log("warn", "leg's media lacks the storage's age: resyncing it in full", {
        leg: leg.name,
        storageId: state?.storageId ?? null,
      });
    } else if (leg.media !== undefined) {
      const d = decide(host.gen.current!, state!.generations);
      if (d.kind === "newer" || d.kind === "split-brain" || d.kind === "unrelated") {
        host.setState(leg, "split-brain", d.why);
        host.logger.log("error", "leg refused", { leg: leg.name, why: d.why });
        return;
      }
      if (d.kind === "full") {
        need = ChunkBits.full(host.chunks);
      } else {
        need = leg.need?.copy() ?? host.bitmap.bits.copy();
        if (leg.need === undefined) need.or(host.bitmap.bits);
        const own = await loadBits(host, leg);
        if (own !== undefined) need.or(own);
      }
    } else {
      need = leg.need ?? ChunkBits.full(host.chunks);
    }
    if (host.inSync === 0) return;
    leg.need = need;
    for (let c = need.next(0); c >= 0; c = need.next(c + 1)) host.bitmap.setBit(c);
    host.setState(leg, "rebuilding", undefined);
    if (atStart) {
      void host.resync(leg);
    } else {
      await host.bitmap.store().catch(() => {});
      void host.resync(leg);
    }
  } finally {
    leg.returning = false;
  }
}

/**
 * The mirror went down when `leg`, its last in-sync leg, left; now the leg answers again.
 * Like DRBD's last primary disk: no write was acknowledged after that moment (with no in-sync
 * leg every write fails), so this leg still holds every acknowledged write and is taken back
 * as the up-to-date reference, provided its media is that same member: the current
 * generation it had then, the storage's age, and no interrupted resync. Only that leg: a leg
 * that was already out or rebuilding when the mirror went down may be stale. The other legs
 * are then judged against it as usual (a rebuilding leg resumes from its bits). Resolves false
 * when the media is not that member (the leg is judged like any other and stays out).
 */
async function readmit(host: LegJudgeHost, leg: Leg, state: MediaState): Promise<boolean> {
  const down = host.down!;
  if (
    !down.currents.has(state.generations.current) || isInconsistent(state) ||
    !isMember(state, host.gen.storageId)
  ) {
    host.logger.log("warn", "the last in-sync leg answers with other media: not taken back", {
      leg: leg.name,
      generation: state.generations.current,
    });
    return false;
  }
  // A rotation started while down stamps no leg; let it end before the generations are set.
  for (let p = host.gen.pending; p !== undefined; p = host.gen.pending) {
    await p.catch(() => {});
  }
  if (host.down !== down || host.inSync > 0 || leg.state !== "out" || host.closed) return true;
  host.gen.current = state.generations;
  leg.need = undefined;
  host.setState(leg, "in-sync", undefined);
  // The others are not in sync: the next write takes a new generation, as after any leave.
  host.gen.mustRotate = true;
  host.logger.log("warn", "the mirror took back its last in-sync leg: serving again", {
    leg: leg.name,
    generation: state.generations.current,
  });
  // Writes cut short when the mirror went down may have reached another leg and not this
  // one: those chunks (the activity log, in the bits) are copied to the legs that are out.
  for (const l of host.legs) {
    if (l.state !== "in-sync" && l.state !== "rebuilding" && l.need !== undefined) {
      l.need.or(host.bitmap.bits);
    }
  }
  // Bits set while no leg served were stored nowhere: store the whole bitmap on this leg.
  host.bitmap.allPagesChanged();
  await host.bitmap.store().catch(() => {});
  // A leg whose resync is still winding down is judged by the probe once it has stopped.
  for (const l of host.legs) {
    if (l.state === "out" && l.resync === undefined) void judgeLeg(host, l, false);
  }
  return true;
}
