/**
 * The mirror's read path: a read goes to one in-sync leg (the read policy picks) and fails over
 * to the next on error. A leg that refuses the request is at fault only if another leg serves
 * it; when every leg refuses, the client hears the refusal. Extents and cache hints ask one leg.
 */
import type { Extent } from "../block/contract.ts";
import type { MirrorCore } from "./core.ts";
import { describe, isRequestError } from "./errors.ts";
import { invariant } from "./invariants.ts";
import type { Leg } from "./leg.ts";
import type { ReadPolicy } from "./read_policy.ts";

/** An in-sync leg for [offset, offset+length), chosen by `policy`. */
export function pickReadLeg(
  core: MirrorCore,
  policy: ReadPolicy,
  offset = 0,
  length = 0,
): Leg | undefined {
  const legs = core.legs;
  const leg = legs[policy.pick(legs.length, (i) => legs[i]!.state === "in-sync", offset, length)];
  invariant(
    leg === undefined || leg.state === "in-sync",
    () => `${leg!.name} was picked for a read while ${leg!.state}`,
  );
  return leg;
}

export async function readFromLegs(
  core: MirrorCore,
  policy: ReadPolicy,
  offset: number,
  length: number,
  into?: Uint8Array,
): Promise<Uint8Array> {
  let lastError: unknown;
  /** Legs that refused the request: theirs is the fault only if another leg serves it. */
  const refused: { leg: Leg; epoch: number; error: unknown }[] = [];
  for (let attempt = 0; attempt < core.legs.length; attempt++) {
    const leg = pickReadLeg(core, policy, offset, length);
    if (leg === undefined || refused.some((r) => r.leg === leg)) break;
    const epoch = leg.epoch;
    const started = core.clock.now();
    try {
      // The leg reads into a buffer of its own, never into the caller's: a leg that times out
      // is abandoned but may still answer later, and must not write into `into` after the
      // caller has it back (from another leg) and reused it.
      const data = await core.timed(leg, leg.device.read(offset, length));
      leg.reads++;
      leg.latency.read.record(core.clock.now() - started);
      for (const r of refused) {
        core.fail(r.leg, r.epoch, `read refused by this leg alone (${describe(r.error)})`);
      }
      if (into === undefined) return data;
      const view = into.subarray(0, length);
      view.set(data);
      return view;
    } catch (error) {
      lastError = error;
      if (isRequestError(error)) refused.push({ leg, epoch, error });
      else core.fail(leg, epoch, `read failed: ${describe(error)}`);
    }
  }
  if (refused.length > 0 && core.inSyncCount() > 0) throw refused[0]!.error;
  throw core.noLegs("read", lastError);
}

export async function extentsFromLeg(
  core: MirrorCore,
  policy: ReadPolicy,
  offset: number,
  length: number,
): Promise<Extent[]> {
  const leg = pickReadLeg(core, policy);
  if (leg === undefined) throw core.noLegs("extents", undefined);
  const epoch = leg.epoch;
  try {
    return await core.timed(leg, leg.device.extents(offset, length));
  } catch (error) {
    if (!isRequestError(error)) core.fail(leg, epoch, `extents failed: ${describe(error)}`);
    // Allocation state is advisory: report plain data rather than fail the client.
    return [{ length, hole: false, zero: false }];
  }
}

export async function cacheOnLeg(
  core: MirrorCore,
  policy: ReadPolicy,
  offset: number,
  length: number,
): Promise<void> {
  const leg = pickReadLeg(core, policy);
  if (leg !== undefined) await leg.device.cache(offset, length).catch(() => {});
}
