/**
 * The mirror's write path: a change goes to every in-sync and rebuilding leg at once under the
 * range lock, and is acknowledged once every in-sync leg has it. With persistence its chunks are
 * marked durably in the activity log first, and the legs that missed it get their chunks marked
 * under a new generation before the ack. An error on some legs only is those legs' fault: they
 * leave, and the write is acknowledged by the others; only when every in-sync leg refuses the
 * request the same way does the client hear it. A leg answering EFENCED fences the mirror
 * (fencing.ts): the change fails before any leg is marked, and nothing is acknowledged after.
 */
import { type BlockDevice, BlockError } from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";
import { describe, isRequestError } from "./errors.ts";
import type { GenerationStamps } from "./generation_stamps.ts";
import { checkAcknowledged } from "./invariants.ts";
import { type Leg, takesWrites } from "./leg.ts";
import { fencedError, type FenceRecord } from "./fencing.ts";
import type { WriteIntentBitmap } from "./write_intent_bitmap.ts";

/** What the write path needs of the mirror. */
export interface WriteHost {
  readonly legs: readonly Leg[];
  readonly chunkSize: number;
  readonly bitmap: WriteIntentBitmap;
  readonly gen: GenerationStamps;
  readonly clock: Clock;
  /** The mirror keeps media state on its legs. */
  readonly persist: boolean;
  /** Set once the mirror is fenced: nothing more is acknowledged. */
  readonly fenced: FenceRecord | undefined;
  lock<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T>;
  timed<T>(leg: Leg, op: Promise<T>): Promise<T>;
  /** Fails `leg` if it is still at `epoch`. */
  fail(leg: Leg, epoch: number, why: string): void;
  /** Marks chunks [first, last] lacking on each of `legs`; true when a bitmap bit was set. */
  recordMisses(legs: readonly Leg[], first: number, last: number): boolean;
  /** The error for `what` when no leg serves. */
  noLegs(what: string, cause: unknown): BlockError;
}

/** A change to [offset, offset+length): activity log, every target leg, then miss tracking. */
export function writeToLegs(
  host: WriteHost,
  offset: number,
  length: number,
  what: string,
  op: (d: BlockDevice) => Promise<void>,
): Promise<void> {
  return host.lock(offset, length, async () => {
    if (host.fenced !== undefined) throw fencedError(what, host.fenced);
    const first = Math.floor(offset / host.chunkSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / host.chunkSize);
    if (!host.persist) {
      const spread = taken(host, await everyLeg(host, what, op), first, last);
      host.recordMisses(spread.missed, first, last);
      stillHeld(host, spread, what);
      checkAcknowledged(host.legs, spread.took, what, host.fenced);
      return;
    }
    // Every chunk this write touches is marked durably before it reaches ANY leg: a crash of
    // the mirror may leave it on some legs only, and only marked chunks are reconciled at the
    // next start. A chunk already active may still have its store pending.
    const durableAt = host.bitmap.beginWrite(first, last, host.clock.now());
    try {
      if (host.gen.mustRotate) await host.gen.ensureRotated();
      if (!host.bitmap.isDurable(durableAt)) await host.bitmap.store(durableAt);
      const spread = taken(host, await everyLeg(host, what, op), first, last);
      const newBits = spread.missed.length > 0 &&
        host.recordMisses(spread.missed, first, last);
      // Acknowledged only under a generation every serving leg carries (a rotation begun
      // before, still being stamped, included) and the missing legs are behind, with their
      // chunks marked durably on the legs that serve.
      if (host.gen.mustRotate || host.gen.pending !== undefined) await host.gen.ensureRotated();
      if (newBits) await host.bitmap.store();
      // Fencing may have come while the stamps and bits were stored (on some legs only).
      if (host.fenced !== undefined) throw fencedError(what, host.fenced);
      stillHeld(host, spread, what);
      checkAcknowledged(host.legs, spread.took, what, host.fenced);
    } finally {
      host.bitmap.endWrite(first, last, host.clock.now());
    }
  });
}

/**
 * Before the acknowledgement: every leg in sync now must be in the life it had when the change
 * went out. A leg that took it and then left and came back (the mirror took back its last leg
 * after a crash) may have lost it with its unsynced writes: the client must not hear success.
 * With no leg in sync any more, none holds it for sure either.
 */
function stillHeld(host: WriteHost, spread: Taken, what: string): void {
  const inSync = host.legs.filter((l) => l.state === "in-sync");
  const moved = inSync.filter((l) => spread.sentAt.has(l) && spread.sentAt.get(l) !== l.epoch);
  if (inSync.length === 0 || moved.length > 0) {
    const why = moved.length > 0
      ? `${moved.map((l) => l.name).join(", ")} left and came back before it was acknowledged`
      : "every leg that took it left before it was acknowledged";
    throw new BlockError("EIO", `${what}: ${why}; it may or may not have been applied`);
  }
}

type Taken = Extract<Spread, { kind: "taken" }>;

/** The spread of a change that was taken; a refused one marks its divergent legs and throws. */
function taken(host: WriteHost, spread: Spread, first: number, last: number) {
  if (spread.kind === "taken") return spread;
  host.recordMisses(spread.divergent, first, last);
  throw spread.error;
}

/** Which legs took a change, and which lack it (not targeted, failed, or refused it). */
export type Spread =
  | {
    readonly kind: "taken";
    readonly took: ReadonlySet<Leg>;
    readonly missed: readonly Leg[];
    /** Each target leg's epoch when the change went out to it. */
    readonly sentAt: ReadonlyMap<Leg, number>;
  }
  /**
   * Every in-sync leg refused the request: the client hears `error`, and no leg is at fault.
   * `divergent`: rebuilding legs that took it anyway, which now differ from the in-sync ones.
   */
  | { readonly kind: "refused"; readonly error: unknown; readonly divergent: readonly Leg[] };

/**
 * Runs `op` on every in-sync and rebuilding leg at once. Taken while at least one in-sync leg
 * took it; a leg that failed, or refused what an in-sync leg took, is failed.
 */
export async function everyLeg(
  host: WriteHost,
  what: string,
  op: (device: BlockDevice) => Promise<void>,
): Promise<Spread> {
  const targets = host.legs.filter(takesWrites);
  const epochs = targets.map((l) => l.epoch);
  const wasInSync = targets.map((l) => l.state === "in-sync");
  if (!wasInSync.includes(true)) throw host.noLegs(what, undefined);
  // Each leg's answer is timed on its own (for status; nothing decides on it).
  const started = host.clock.now();
  const timing = what === "flush" ? "flush" : "write";
  const results = await Promise.allSettled(
    targets.map((leg) =>
      host.timed(leg, op(leg.device)).then(() =>
        leg.latency[timing].record(host.clock.now() - started)
      )
    ),
  );
  // A leg said EFENCED (or the exporter lost ownership meanwhile): no leg is at fault, none is
  // marked, and the change is not acknowledged.
  if (host.fenced !== undefined) throw fencedError(what, host.fenced);
  const took = new Set<Leg>();
  let inSyncTook = 0;
  const refusedBy: { leg: Leg; epoch: number; error: unknown }[] = [];
  let refusal: unknown;
  let lastError: unknown;
  results.forEach((result, i) => {
    const leg = targets[i]!;
    if (result.status === "fulfilled") {
      took.add(leg);
      leg.writes++;
      if (wasInSync[i]) inSyncTook++;
    } else if (isRequestError(result.reason)) {
      refusedBy.push({ leg, epoch: epochs[i]!, error: result.reason });
      if (wasInSync[i]) refusal = result.reason;
    } else {
      lastError = result.reason;
      host.fail(leg, epochs[i]!, `${what} failed: ${describe(result.reason)}`);
    }
  });
  if (inSyncTook === 0 && refusal !== undefined) {
    return { kind: "refused", error: refusal, divergent: [...took] };
  }
  for (const { leg, epoch, error } of refusedBy) {
    host.fail(leg, epoch, `${what} refused by this leg alone (${describe(error)})`);
  }
  if (inSyncTook === 0) throw host.noLegs(what, lastError);
  return {
    kind: "taken",
    took,
    missed: host.legs.filter((l) => !took.has(l) && l.state !== "removed"),
    sentAt: new Map(targets.map((l, i) => [l, epochs[i]!])),
  };
}
