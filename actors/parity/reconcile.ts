/**
 * A parity storage's start, once the mirror's start chose the reference legs (one generation):
 * stripes a stored bitmap marks may hold a write cut short between data and parity (the write
 * hole). Their parity is never trusted: it is recomputed from the data before the storage serves.
 * With a leg missing or behind that cannot be done (md's "dirty degraded array"): its units in
 * those stripes would be rebuilt from parity that may be wrong, so the start is refused unless
 * forced, naming the stripes. A new storage on media that is not blank gets parity everywhere.
 */
import type { MirrorCore } from "../mirror/core.ts";
import { describe } from "../mirror/errors.ts";
import { ChunkBits } from "../mirror/chunk_bits.ts";
import { isBlank } from "../mirror/generations.ts";
import type { Leg } from "../mirror/leg.ts";
import { StartRefused } from "../mirror/start.ts";
import type { BufferPool } from "../../util/buffer_pool.ts";
import type { Geometry } from "./geometry.ts";
import { xorInto } from "./xor.ts";

export async function reconcileParity(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  reference: readonly Leg[],
  union: ChunkBits,
  cleanly: boolean,
): Promise<void> {
  try {
    await reconcile(core, g, pool, reference, union, cleanly);
  } catch (error) {
    // A start refused here leaves the media as it found it: the stop that follows must not
    // stamp the reference legs as stopped cleanly, nor a leg that failed a read as outdated,
    // or the next start would trust the stripes it could not repair (found by sim seed 38).
    core.persist = false;
    throw error;
  }
}

async function reconcile(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  reference: readonly Leg[],
  union: ChunkBits,
  cleanly: boolean,
): Promise<void> {
  for (const l of reference.slice(1)) {
    core.dispatch(l, { t: "judged", verdict: { kind: "reference" } }, l.epoch);
  }
  const fresh = reference.some((l) => l.adopt) && !reference.every((l) => isBlank(l.known));
  const marked = fresh ? ChunkBits.full(core.chunks) : union;
  if ((cleanly && !fresh) || marked.isEmpty()) return;
  const missing = core.legs.filter((l) => !reference.includes(l));
  if (missing.length > 0) {
    if (fresh) return; // a new storage: nothing was acknowledged, its rebuild makes it whole
    const names = missing.map((l) => l.name).join(", ");
    const why = `dirty degraded parity: the storage stopped with writes in flight and ${names} ` +
      `${missing.length === 1 ? "is" : "are"} not in sync now: the parity of ${
        stripes(g, core.chunkSize, marked)
      } may not match their data, so ${names}'s units there cannot be rebuilt for sure`;
    if (!core.force) {
      throw new StartRefused(
        `${why}. Bring ${names} back (the stripes are then repaired from the data), or start ` +
          `with --force to serve anyway: reads of ${names}'s units in those stripes may be wrong`,
      );
    }
    core.logger.log("warn", "parity starts dirty and degraded (forced)", { why });
    return;
  }
  let repaired = 0;
  for (let c = marked.next(0); c >= 0; c = marked.next(c + 1)) {
    repaired += await repairChunk(core, g, pool, c);
  }
  const legs = core.legs;
  await Promise.all(legs.map((l) => core.timed(l, l.device.flush()))).catch((error) => {
    throw new StartRefused(`repairing parity failed: a flush failed: ${describe(error)}`);
  });
  core.logger.log(repaired > 0 ? "warn" : "info", "parity of marked stripes recomputed at start", {
    chunks: marked.count(),
    repairedStripes: repaired,
  });
  if (core.bitmap.recompute()) await core.bitmap.store();
}

/** Recomputes the parity of every row of chunk `c` that does not add up; returns how many. */
export async function repairChunk(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  c: number,
): Promise<number> {
  const offset = c * core.chunkSize;
  const length = Math.min(core.chunkSize, g.legBytes - offset);
  const first = offset / g.unit;
  const range = g.rowRange(first, first + length / g.unit - 1);
  return await core.lock(range.offset, range.length, async () => {
    const legs = core.legs;
    const buffers = legs.map(() => pool.get(length));
    try {
      const read = await Promise.all(
        legs.map((l, i) =>
          core.timed(l, l.device.read(offset, length, buffers[i]!.subarray(0, length))).catch(
            (error) => {
              throw new StartRefused(
                `repairing parity: ${l.name} failed a read: ${describe(error)}`,
              );
            },
          )
        ),
      );
      const sum = new Uint8Array(length);
      for (const r of read) xorInto(sum, r.subarray(0, length));
      const writes: Promise<void>[] = [];
      for (let i = 0; i < length / g.unit; i++) {
        const at = i * g.unit;
        const diff = sum.subarray(at, at + g.unit);
        if (diff.every((b) => b === 0)) continue;
        // The parity that makes the row add up: the old parity xor the row's sum.
        const p = g.parityLeg(first + i);
        const parity = read[p]!.subarray(at, at + g.unit);
        xorInto(parity, diff);
        const leg = legs[p]!;
        writes.push(
          core.timed(leg, leg.device.write(offset + at, parity, false)).catch((error) => {
            throw new StartRefused(
              `repairing parity: ${leg.name} failed a write: ${describe(error)}`,
            );
          }),
        );
      }
      await Promise.all(writes);
      return writes.length;
    } finally {
      for (const b of buffers) pool.put(b);
    }
  });
}

/** "stripes a–b, c–d (n chunks)" for the rows of the marked chunks, at most a few ranges. */
function stripes(g: Geometry, chunkSize: number, marked: ChunkBits): string {
  const perChunk = chunkSize / g.unit;
  const ranges: string[] = [];
  for (let c = marked.next(0); c >= 0 && ranges.length < 6; c = marked.next(c + 1)) {
    const last = Math.min(g.rows, (c + 1) * perChunk) - 1;
    ranges.push(`${c * perChunk}–${last}`);
  }
  const more = marked.count() > ranges.length ? ", ..." : "";
  return `stripes ${ranges.join(", ")}${more} (${marked.count()} chunk(s) of ${perChunk} stripes)`;
}
