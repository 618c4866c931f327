/**
 * The mirror's read path: a read goes to one in-sync leg (the read policy picks) and fails over
 * to the next on error; a large read is split across the in-sync legs. A leg that refuses the request is at fault only if another leg serves
 * it; when every leg refuses, the client hears the refusal. Extents and cache hints ask one leg.
 */
import type { Extent } from "../block/contract.ts";
import type { MirrorCore } from "./core.ts";
import { type ReadPiece, readPieces } from "../block/read_pieces.ts";
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

/**
 * A read at least this large, with round-robin reads and two or more legs in sync, is split
 * across the legs so their links and disks work on it at once.
 */
export const SPLIT_READ = 256 * 1024;
/** The smallest piece a split read gives one leg. */
const MIN_PIECE = 128 * 1024;

export function readFromLegs(
  core: MirrorCore,
  policy: ReadPolicy,
  offset: number,
  length: number,
  into?: Uint8Array,
): Promise<Uint8Array> {
  const legs = policy.name === "round-robin" && length >= SPLIT_READ
    ? Math.min(core.inSyncCount(), Math.floor(length / MIN_PIECE))
    : 1;
  if (legs < 2) return readFailingOver(core, policy, offset, length, into);
  // Pieces in whole 4 KiB blocks, the last taking what is left.
  const piece = Math.ceil(length / legs / 4096) * 4096;
  const pieces: ReadPiece[] = [];
  for (let at = 0; at < length; at += piece) {
    const n = Math.min(piece, length - at);
    pieces.push({
      at,
      length: n,
      read: (view) => readFailingOver(core, policy, offset + at, n, view),
    });
  }
  return readPieces(length, into, pieces);
}

/** One read from one in-sync leg, failing over to the next on error. */
async function readFailingOver(
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
      // The first attempt reads straight into the caller's buffer. A later one reads into a
      // buffer of its own: the attempt before it may have been abandoned at its deadline and
      // still write into `into` (it holds it, so it is not reused under it), and the caller
      // takes the returned view, not `into` (BlockDevice.read).
      const target = attempt === 0 ? into : undefined;
      const data = await core.timed(leg, leg.device.read(offset, length, target));
      leg.reads++;
      leg.latency.read.record(core.clock.now() - started);
      for (const r of refused) {
        core.fail(r.leg, r.epoch, `read refused by this leg alone (${describe(r.error)})`);
      }
      return data;
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
