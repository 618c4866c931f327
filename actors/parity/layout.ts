/**
 * The parity layout plugged into the mirror's core (actors/mirror/layout.ts): RAID 5 over N legs
 * (geometry.ts), client I/O (reads.ts, writes.ts), chunk rebuild from the other legs
 * (rebuild.ts), verify (verify.ts) and the write-hole repair at start (reconcile.ts). Everything
 * about leg state, the bitmap, generations, resync actors and maintenance stays the mirror's.
 */
import { BlockError, type BlockInfo } from "../block/contract.ts";
import { combineInfo } from "../block/info.ts";
import type { Layout } from "../mirror/layout.ts";
import { BufferPool } from "../../util/buffer_pool.ts";
import { ZERO_BUFFER } from "../block/guard.ts";
import { Geometry } from "./geometry.ts";
import { readParity } from "./reads.ts";
import { recreateFrom } from "./rebuild.ts";
import { reconcileParity } from "./reconcile.ts";
import { verifyParity } from "./verify.ts";
import { writeParity } from "./writes.ts";
import { checkServing } from "./legs.ts";
import type { MirrorCore } from "../mirror/core.ts";

/** The default stripe unit: 64 KiB, as md's chunk. */
export const DEFAULT_UNIT = 64 * 1024;

/** A parity layout with stripe unit `unit` (its geometry is fixed once the legs are known). */
export function parityLayout(unit = DEFAULT_UNIT): Layout & { geometry(): Geometry } {
  let g: Geometry | undefined;
  const geometry = () => {
    if (g === undefined) throw new Error("parity layout used before its legs were known");
    return g;
  };
  // Scratch buffers for reads, parity and rebuilds, shared by every request of this storage.
  const pool = new BufferPool({ maxIdleBytes: 32 * 1024 * 1024 });
  const zero = async (core: MirrorCore, offset: number, length: number, fua: boolean) => {
    for (let at = 0; at < length; at += ZERO_BUFFER.length) {
      const n = Math.min(ZERO_BUFFER.length, length - at);
      await writeParity(core, geometry(), pool, offset + at, ZERO_BUFFER.subarray(0, n), fua);
    }
  };
  return {
    kind: "parity",
    geometry,
    info: (legs: readonly BlockInfo[]): BlockInfo => {
      g = new Geometry(legs.length, unit, Math.min(...legs.map((i) => i.size)));
      if (g.rows === 0) {
        throw new RangeError(
          `parity legs must hold at least one stripe unit (${unit} bytes); the smallest holds ` +
            `${Math.min(...legs.map((i) => i.size))}`,
        );
      }
      // Trim and zero would change data under the parity: zero is written (the guard does),
      // trim is a no-op; allocation is not known per device byte.
      return {
        ...combineInfo(legs),
        size: g.size,
        canTrim: false,
        canZero: false,
        canFastZero: false,
        canExtents: false,
        canCache: false,
      };
    },
    legNeeds: (info) => ({ ...info, size: geometry().legBytes }),
    needInSync: (legs) => legs - 1,
    everyLegNew: true,
    fixedLegs: "a parity storage keeps its legs (its stripes span exactly these): replace a " +
      "leg's media instead, or mark it dirty; it is rebuilt from the others",
    io: {
      read: (core, offset, length, into) =>
        readParity(core, geometry(), pool, offset, length, into),
      write: (core, offset, data, fua) => writeParity(core, geometry(), pool, offset, data, fua),
      flush: async (core) => {
        checkServing(core, "flush");
        const legs = core.legs.filter((l) => l.state === "in-sync" || l.state === "rebuilding");
        const epochs = legs.map((l) => l.epoch);
        const results = await Promise.allSettled(legs.map((l) => core.timed(l, l.device.flush())));
        results.forEach((r, i) => {
          if (r.status === "rejected") {
            core.fail(legs[i]!, epochs[i]!, `flush failed: ${(r.reason as Error).message}`);
          }
        });
        checkServing(core, "flush");
      },
      trim: () => Promise.resolve(),
      zero: (core, offset, length, options) => {
        if (options.fastZero) throw new BlockError("ENOTSUP", "parity cannot zero fast");
        return zero(core, offset, length, options.fua);
      },
      extents: (_core, _offset, length) => Promise.resolve([{ length, hole: false, zero: false }]),
      cache: () => Promise.resolve(),
    },
    recreate: (core) => recreateFrom(core, pool),
    verify: (core, repairFrom) => verifyParity(core, geometry(), pool, repairFrom),
    reconcile: (core, reference, union, cleanly) =>
      reconcileParity(core, geometry(), pool, reference, union, cleanly),
  };
}
