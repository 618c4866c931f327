/**
 * Recreating a chunk of a rebuilding parity leg: every unit on a leg, data or parity, is the XOR
 * of the same bytes on every other leg, so the chunk is read from all the others (each must be in
 * sync: RAID 5 rebuilds one leg at a time) and their XOR written to the target. It runs inside
 * the resync actor's copy loop (pace, progress, landed chunks, flush and stamp at the end are the
 * mirror's), under the range lock of the rows the chunk carries. A leg that fails a read is
 * reported (SourceFailed): the mirror fails it, and the rebuild stops for want of legs.
 * Like the mirror's digest comparison, the target's own bytes are read too and a chunk it holds
 * already is not written (a leg back from a short absence lacks few of the chunks marked), until
 * the first chunks compared all differ (new media): then comparing stops.
 */
import type { MirrorCore } from "../mirror/core.ts";
import type { Recreate } from "../mirror/layout.ts";
import { SourceFailed } from "../mirror/layout.ts";
import { withDeadline } from "../mirror/leg_deadline.ts";
import { ResyncAborted } from "../mirror/resync_copy.ts";
import { landedIn } from "../block/contract.ts";
import type { BufferPool } from "../../util/buffer_pool.ts";
import { xorInto } from "./xor.ts";

/** Chunks compared before a rebuild that skipped none stops comparing (as the mirror's). */
const PROBE_CHUNKS = 8;

export function recreateFrom(core: MirrorCore, pool: BufferPool): Recreate {
  let compared = 0;
  let skipped = 0;
  return async (target, offset, length) => {
    const others = core.legs.filter((l) => l.name !== target.name);
    const behind = others.find((l) => l.state !== "in-sync");
    if (behind !== undefined) {
      throw new ResyncAborted(
        `${behind.name} is ${behind.state}: a parity leg is rebuilt only from every other leg`,
      );
    }
    const buffers = others.map(() => pool.get(length));
    const compare = compared < PROBE_CHUNKS || skipped > 0;
    const own = compare ? pool.get(length) : undefined;
    try {
      const held = own === undefined ? undefined : withDeadline(
        core.clock,
        core.timeoutMs,
        target.name,
        target.device.read(offset, length, own.subarray(0, length)),
      );
      // Awaited below; a failure before then (another read failed first) is not unhandled.
      held?.catch(() => {});
      const read = await Promise.all(others.map((l, i) => {
        const side = { name: l.name, device: l.device, media: l.media, epoch: l.epoch };
        return core.timed(l, l.device.read(offset, length, buffers[i]!.subarray(0, length)))
          .catch((error) => {
            throw new SourceFailed(side, error);
          });
      }));
      // The first leg's bytes are ours to change when they landed in our buffer; else copy.
      const sum = buffers[0]!.subarray(0, length);
      if (!landedIn(read[0]!, sum)) sum.set(read[0]!.subarray(0, length));
      for (let i = 1; i < read.length; i++) xorInto(sum, read[i]!.subarray(0, length));
      if (held !== undefined) {
        compared++;
        const bytes = (await held).subarray(0, length);
        if (bytes.every((b, i) => b === sum[i])) {
          skipped++;
          return false;
        }
      }
      await withDeadline(
        core.clock,
        core.timeoutMs,
        target.name,
        target.device.write(offset, sum, false),
      );
      return true;
    } finally {
      for (const b of buffers) pool.put(b);
      if (own !== undefined) pool.put(own);
    }
  };
}
