/**
 * A parity storage as an actor: the mirror's actor and core (one owner of leg state, bitmap,
 * generations, resync actors, maintenance, status) over the parity layout. It answers the same
 * block contract and returns the same handle as a mirror, so assembly, status and control treat
 * it like one.
 */
import type { BlockDevice } from "../block/contract.ts";
import type { ActorSystem } from "../runtime/system.ts";
import { type Mirror, type MirrorActorOptions, spawnMirror } from "../mirror/actor.ts";
import { DEFAULT_UNIT, parityLayout } from "./layout.ts";

export interface ParityOptions extends Omit<MirrorActorOptions, "layout" | "readPolicy"> {
  /** Bytes of one stripe unit: a power of two from 4 KiB (default 64 KiB). */
  readonly unit?: number;
}

/** Spawns a parity storage over `devices` (at least 3), judges its legs, resolves once it serves. */
export async function spawnParity(
  system: ActorSystem,
  devices: readonly BlockDevice[],
  options: ParityOptions = {},
): Promise<Mirror> {
  const unit = options.unit ?? DEFAULT_UNIT;
  const chunkSize = options.chunkSize ?? Math.max(unit, 1024 * 1024);
  if (chunkSize % unit !== 0) {
    throw new RangeError(
      `the bitmap chunk (${chunkSize} bytes) must be a multiple of the stripe unit (${unit} bytes)`,
    );
  }
  return await spawnMirror(system, devices, { ...options, chunkSize, layout: parityLayout(unit) });
}
