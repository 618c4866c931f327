/**
 * The mirror's write path: a change goes to every in-sync and rebuilding leg under the range
 * lock, and is acknowledged once every in-sync leg has it; with persistence its chunks are
 * marked durably in the activity log first, and the legs that missed it get their chunks
 * marked under a new generation before the ack. A failed leg leaves; the mirror runs degraded
 * while one in-sync leg remains.
 */
import type { BlockDevice, BlockError } from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";
import { ChunkBits } from "../resync/bitmap.ts";
import { describe, isRequestError } from "./mirror_errors.ts";
import type { MirrorGenerations } from "./mirror_generations.ts";
import type { Leg } from "./mirror_leg.ts";
import type { WriteIntentBitmap } from "./write_intent_bitmap.ts";

/** What the write path needs of the mirror. */
export interface WriteHost {
  readonly legs: readonly Leg[];
  readonly chunks: number;
  readonly chunkSize: number;
  readonly bitmap: WriteIntentBitmap;
  readonly gen: MirrorGenerations;
  readonly clock: Clock;
  /** The mirror keeps media state on its legs. */
  readonly persist: boolean;
  lock<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T>;
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  fail(leg: Leg, why: string): void;
  /** The error for `what` when no leg serves. */
  noLegs(what: string, cause: unknown): BlockError;
}

/** A change to [offset, offset+length): activity log, every target leg, then miss tracking. */
export async function writeToLegs(
  host: WriteHost,
  offset: number,
  length: number,
  what: string,
  op: (d: BlockDevice) => Promise<void>,
): Promise<void> {
  return host.lock(offset, length, async () => {
    const first = Math.floor(offset / host.chunkSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / host.chunkSize);
    if (host.persist) {
      // Every chunk this write touches must be marked durably before it reaches ANY leg: a
      // crash of the mirror may leave it on some legs only, and only marked chunks are
      // reconciled at the next start. A chunk already active may still have its store pending.
      const durableAt = host.bitmap.beginWrite(first, last);
      try {
        if (host.gen.mustRotate) await host.gen.ensureRotated();
        if (!host.bitmap.isDurable(durableAt)) await host.bitmap.store(durableAt);
        const missed = await everyLeg(host, what, op);
        if (missed.length > 0) await recordMiss(host, missed, first, last);
      } finally {
        host.bitmap.endWrite(first, last, host.clock.now());
      }
      return;
    }
    const missed = await everyLeg(host, what, op);
    for (const leg of missed) {
      if (leg.need === undefined) continue;
      for (let c = first; c <= last; c++) leg.need.set(c);
    }
  });
}

/** Before the ack: the legs that missed chunks get them marked, durably, under a new generation. */
async function recordMiss(
  host: WriteHost,
  missed: Leg[],
  first: number,
  last: number,
): Promise<void> {
  let newBits = false;
  for (const leg of missed) {
    leg.need ??= new ChunkBits(host.chunks);
    for (let c = first; c <= last; c++) {
      leg.need.set(c);
      if (host.bitmap.setBit(c)) newBits = true;
    }
  }
  await host.gen.ensureRotated();
  if (newBits) await host.bitmap.store();
}

/**
 * Runs `op` on every in-sync and rebuilding leg; resolves with the legs that missed it (not
 * targeted, or failed). Succeeds while at least one in-sync leg succeeded.
 */
export async function everyLeg(
  host: WriteHost,
  what: string,
  op: (device: BlockDevice) => Promise<void>,
): Promise<Leg[]> {
  const targets = host.legs.filter((l) => l.state === "in-sync" || l.state === "rebuilding");
  if (!targets.some((l) => l.state === "in-sync")) throw host.noLegs(what, undefined);
  const results = await Promise.allSettled(
    targets.map((leg) => host.timed(leg, op(leg.device))),
  );
  let ok = 0;
  let requestError: unknown;
  let lastError: unknown;
  const missed = host.legs.filter((l) => !targets.includes(l) && !l.removed);
  results.forEach((result, i) => {
    const leg = targets[i]!;
    if (result.status === "fulfilled") {
      if (leg.state === "in-sync") ok++;
      leg.writes++;
    } else if (isRequestError(result.reason)) {
      requestError = result.reason;
    } else {
      lastError = result.reason;
      host.fail(leg, `${what} failed: ${describe(result.reason)}`);
      missed.push(leg);
    }
  });
  if (requestError !== undefined && ok === 0) throw requestError;
  if (ok === 0) throw host.noLegs(what, lastError);
  return missed;
}
