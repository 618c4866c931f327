/**
 * Resync of one mirror leg: marks the leg's media as a resync target, runs the resync job
 * (resync.ts) from an in-sync leg, persists progress as cleared bitmap bits, and lets the leg
 * rejoin the in-sync set once it holds every chunk. The mirror's internals it needs come
 * through `LegResyncHost`.
 */
import type { MediaGenerations } from "../block/contract.ts";
import { NO_GENERATION } from "../block/media.ts";
import type { Clock } from "../../util/clock.ts";
import type { Logger } from "../../util/log.ts";
import { targetFlags } from "./generations.ts";
import { ResyncAborted, type ResyncPace, type ResyncStats, runResync } from "./resync.ts";
import { describe } from "../mapping/mirror_errors.ts";
import type { MirrorGenerations } from "../mapping/mirror_generations.ts";
import type { Leg, LegState } from "../mapping/mirror_leg.ts";
import type { WriteIntentBitmap } from "../mapping/write_intent_bitmap.ts";

/** What a leg's resync needs of the mirror. */
export interface LegResyncHost {
  readonly legs: readonly Leg[];
  readonly size: number;
  readonly chunkSize: number;
  readonly bitmap: WriteIntentBitmap;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly pace: ResyncPace;
  /** Client requests so far (the resync yields to client traffic). */
  readonly clientOps: number;
  readonly closed: boolean;
  /** The mirror keeps media state on its legs. */
  readonly persist: boolean;
  /** The generations the serving legs carry, and their stamping. */
  readonly gen: MirrorGenerations;
  lock<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T>;
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  fail(leg: Leg, why: string): void;
  setState(leg: Leg, state: LegState, reason: string | undefined): void;
}

/** Runs a resync job for `leg` until it holds every chunk, then lets it rejoin. */
export async function resyncLeg(
  host: LegResyncHost,
  leg: Leg,
  fixedSource: Leg | undefined,
): Promise<void> {
  const need = leg.need!;
  const total = need.count();
  const stats: ResyncStats = {
    bytesTotal: total * host.chunkSize,
    bytesDone: 0,
    bytesCopied: 0,
    chunksSkipped: 0,
    startedAt: host.clock.now(),
    rateBytesPerSec: 0,
  };
  const pickSource = (): Leg | undefined => {
    if (fixedSource !== undefined) {
      return fixedSource.state === "in-sync" || fixedSource.state === "rebuilding"
        ? fixedSource
        : undefined;
    }
    return host.legs.find((l) => l.state === "in-sync" && l.media !== undefined) ??
      host.legs.find((l) => l.state === "in-sync");
  };
  leg.resync = { kind: "resync", source: pickSource()?.name ?? "?", stats };
  host.logger.log("info", "resync started", {
    leg: leg.name,
    bytes: stats.bytesTotal,
    source: leg.resync.source,
  });
  /** Chunks landed on the target whose bits are cleared once the target flushed them. */
  let settled: number[] = [];
  let lastStore = host.clock.now();
  const perStore = Math.max(8, Math.floor((64 * 1024 * 1024) / host.chunkSize));
  try {
    await markTarget(host, leg);
    await runResync({
      kind: "resync",
      sourceName: leg.resync.source,
      source: () => {
        const s = pickSource();
        if (s === undefined) return undefined;
        if (leg.resync !== undefined) leg.resync.source = s.name;
        return { name: s.name, device: s.device, media: s.media };
      },
      sourceFailed: (side, error) => {
        const s = host.legs.find((l) => l.name === side.name);
        if (s !== undefined) host.fail(s, `resync read failed: ${describe(error)}`);
      },
      target: { name: leg.name, device: leg.device, media: leg.media },
      need,
      chunkSize: host.chunkSize,
      size: host.size,
      lock: (o, l, fn) => host.lock(o, l, fn),
      wanted: () => leg.state === "rebuilding" && !leg.removed && !host.closed,
      landed: (c) => {
        need.clear(c);
        settled.push(c);
        const now = host.clock.now();
        if (settled.length >= perStore || now - lastStore >= 200) {
          lastStore = now;
          void persistProgress(host, leg, settled);
          settled = [];
        }
      },
      clientOps: () => host.clientOps,
      clock: host.clock,
      pace: host.pace,
    }, stats);
    await host.timed(leg, leg.device.flush());
    if (leg.state !== "rebuilding" || leg.removed) return;
    leg.need = undefined;
    leg.adopt = leg.adopt || leg.media !== undefined;
    await host.gen.stamp(leg);
    if (leg.media !== undefined) {
      const bits = host.bitmap.bits;
      await host.timed(
        leg,
        leg.media.storeBitmap(
          0,
          bits.bytes.subarray(0, Math.min(bits.bytes.length, leg.known?.bitmapBytes ?? 0)),
        ),
      );
    }
    leg.resyncedBytes += stats.bytesDone;
    leg.copiedBytes += stats.bytesCopied;
    leg.resync = undefined;
    host.setState(leg, "in-sync", undefined);
    host.logger.log("info", "resync done: leg is in sync", {
      leg: leg.name,
      bytes: stats.bytesDone,
      copied: stats.bytesCopied,
      skipped: stats.chunksSkipped,
    });
    host.bitmap.recompute();
    await host.bitmap.store().catch(() => {});
  } catch (error) {
    leg.resyncedBytes += stats.bytesDone;
    leg.copiedBytes += stats.bytesCopied;
    leg.resync = undefined;
    if (leg.state === "rebuilding" && !leg.removed && !host.closed) {
      // Lost its source or failed itself: out, keeping what it still needs, and tried again.
      host.fail(
        leg,
        `resync ${error instanceof ResyncAborted ? "stopped" : "failed"}: ${describe(error)}`,
      );
    }
    host.logger.log("warn", "resync stopped", {
      leg: leg.name,
      why: describe(error),
      left: need.count(),
    });
  }
}

/**
 * Progress is the cleared bits: once the target has flushed the chunks that landed, their
 * bits are cleared (where no other leg needs them) and stored.
 */
async function persistProgress(
  host: LegResyncHost,
  leg: Leg,
  landed: readonly number[],
): Promise<void> {
  try {
    await host.timed(leg, leg.device.flush());
    for (const c of landed) if (!host.bitmap.wanted(c)) host.bitmap.clearBit(c);
    await host.bitmap.store();
  } catch {
    // the resync itself notices a failing leg
  }
}

/**
 * Before any chunk is copied, the target's media says it is a resync target: its needed bits
 * are durable in the bitmap (on the serving legs and on itself) and it is flagged
 * inconsistent, so it is never taken for a reference. A full resync target is stamped as a
 * member at the generation the bitmap tracks from, every bit set: after a crash of either
 * side it is judged "bitmap" and resumes where its bits say, instead of starting over.
 */
async function markTarget(host: LegResyncHost, leg: Leg): Promise<void> {
  if (leg.media === undefined || !host.persist) return;
  await host.bitmap.store();
  let generations: MediaGenerations | undefined;
  if (leg.adopt) {
    if (host.gen.current === undefined || host.gen.current.bitmap === NO_GENERATION) {
      host.gen.mustRotate = true;
      await host.gen.ensureRotated();
    }
    const from = host.gen.current!.bitmap;
    generations = { current: from, bitmap: NO_GENERATION, history: [] };
  }
  leg.known = await host.timed(
    leg,
    leg.media.updateMedia({
      ...(host.gen.storageId === undefined ? {} : { storageId: host.gen.storageId }),
      ...(generations === undefined ? {} : { generations }),
      flags: targetFlags(host.chunkSize),
    }),
  );
}
