/**
 * The mirror's invariants, asserted in production (TigerBeetle's style): a broken one means the
 * mirror's bookkeeping can no longer tell which leg holds what, so it stops with a clear message
 * instead of guessing. Each check names what broke and where it was found.
 */
import type { ChunkBits } from "./chunk_bits.ts";
import type { Leg } from "./leg.ts";

/** A broken invariant: the mirror stops. */
export class InvariantError extends Error {
  constructor(what: string) {
    super(`mirror invariant broken: ${what}`);
    this.name = "InvariantError";
  }
}

export function invariant(ok: boolean, what: () => string): asserts ok {
  if (!ok) throw new InvariantError(what());
}

/**
 * After every transition, for every leg:
 * - an in-sync leg lacks nothing (a leg is readable only when no bit marks a chunk it misses);
 * - a leg that is not in sync tracks what it lacks, and the bitmap covers it (so the bits a
 *   crash leaves behind include every chunk some leg lacks).
 */
export function checkLegs(legs: readonly Leg[], bits: ChunkBits): void {
  for (const leg of legs) {
    if (leg.state === "removed") continue;
    if (leg.state === "in-sync") {
      invariant(
        leg.need === undefined,
        () => `${leg.name} is in sync while it lacks ${leg.need?.count()} chunk(s)`,
      );
      continue;
    }
    const need = leg.need;
    invariant(need !== undefined, () => `${leg.name} is ${leg.state} and its misses are untracked`);
    invariant(
      need.isSubsetOf(bits),
      () => `${leg.name} lacks chunk ${need.firstNotIn(bits)} that the bitmap does not mark`,
    );
  }
}

/**
 * When a write is acknowledged: the mirror is not fenced (a newer exporter owns the legs), and
 * every leg the mirror calls in sync took it.
 */
export function checkAcknowledged(
  legs: readonly Leg[],
  took: ReadonlySet<Leg>,
  what: string,
  fenced?: { readonly why: string },
): void {
  invariant(fenced === undefined, () => `${what} acknowledged after fencing (${fenced!.why})`);
  for (const leg of legs) {
    invariant(
      leg.state !== "in-sync" || took.has(leg),
      () => `${what} acknowledged while in-sync leg ${leg.name} did not take it`,
    );
  }
}
