/**
 * The parity write path. A write holds the range lock over whole rows (two writes to different
 * units of one row race on its parity). With media, every chunk of those rows is marked durably
 * in the write-intent bitmap before the first leg is written: a crash between data and parity
 * (the write hole) leaves the rows marked, and the next start recomputes their parity instead of
 * trusting it (reconcile.ts). Each row gets its parity as row_plan.ts decides; reads happen
 * first (a leg failing one is failed and the rows planned again without it), then every data and
 * parity unit is written at once to the legs that take writes. Legs that could not take it are
 * marked as missing those chunks. The write is acknowledged when every in-sync leg it went to
 * took it, in the life it had when it was sent, and enough legs are still in sync.
 */
import { BlockError } from "../block/contract.ts";
import type { MirrorCore } from "../mirror/core.ts";
import { fencedError } from "../mirror/fencing.ts";
import { invariant } from "../mirror/invariants.ts";
import { type Leg, takesWrites } from "../mirror/leg.ts";
import type { BufferPool } from "../../util/buffer_pool.ts";
import type { Geometry } from "./geometry.ts";
import { checkServing, legRead, legWrite, readable, settleOnLegs, tooFewLegs } from "./legs.ts";
import { planRow, type RowPlan, type Touch, touchesByRow } from "./row_plan.ts";
import { xorInto } from "./xor.ts";

/** Writes `data` at device byte `offset` of a parity storage. */
export function writeParity(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  offset: number,
  data: Uint8Array,
  fua: boolean,
): Promise<void> {
  const rows = g.rowsOf(offset, data.length);
  const range = g.rowRange(rows.first, rows.last);
  return core.lock(range.offset, range.length, async () => {
    if (core.fenced !== undefined) throw fencedError("write", core.fenced);
    const first = Math.floor((rows.first * g.unit) / core.chunkSize);
    const last = Math.floor((rows.last * g.unit) / core.chunkSize);
    if (!core.persist) {
      const written = await applyWrite(core, g, pool, offset, data, fua);
      core.recordMisses(written.missed, first, last);
      acknowledge(core, written);
      return;
    }
    // Marked before any leg is written: only marked rows are repaired at the next start.
    const durableAt = core.bitmap.beginWrite(first, last, core.clock.now());
    try {
      if (core.gen.mustRotate) await core.gen.ensureRotated();
      if (!core.bitmap.isDurable(durableAt)) await core.bitmap.store(durableAt);
      const written = await applyWrite(core, g, pool, offset, data, fua);
      const newBits = written.missed.length > 0 &&
        core.recordMisses(written.missed, first, last);
      if (core.gen.mustRotate || core.gen.pending !== undefined) await core.gen.ensureRotated();
      if (newBits) await core.bitmap.store();
      if (core.fenced !== undefined) throw fencedError("write", core.fenced);
      acknowledge(core, written);
    } finally {
      core.bitmap.endWrite(first, last, core.clock.now());
    }
  });
}

interface Written {
  /** Each leg a unit was sent to, with its epoch then. */
  readonly sentAt: ReadonlyMap<Leg, number>;
  readonly failed: ReadonlySet<Leg>;
  /** Legs that lack what the write changed (could not take it, or failed it). */
  readonly missed: readonly Leg[];
}

/**
 * The client may hear success only when the storage still serves and every in-sync leg the
 * write went to took it in the life it had then (a leg that failed and came back may have lost
 * it with its unsynced writes).
 */
function acknowledge(core: MirrorCore, w: Written): void {
  const need = core.layout.needInSync(core.legs.length);
  const inSync = core.legs.filter((l) => l.state === "in-sync");
  const moved = inSync.filter((l) => w.sentAt.has(l) && w.sentAt.get(l) !== l.epoch);
  if (inSync.length < need || moved.length > 0) {
    throw new BlockError(
      "EIO",
      `write: ${
        moved.length > 0
          ? `${moved.map((l) => l.name).join(", ")} left and came back before it was acknowledged`
          : tooFewLegs(core, "legs left before it was acknowledged").detail
      }; it may or may not have been applied`,
    );
  }
  for (const l of inSync) {
    invariant(
      !w.failed.has(l),
      () => `parity write acknowledged while in-sync leg ${l.name} failed it`,
    );
  }
}

/** Plans, reads, computes parity and writes every row; returns who took it. */
async function applyWrite(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  offset: number,
  data: Uint8Array,
  fua: boolean,
): Promise<Written> {
  const byRow = touchesByRow(g, offset, data.length);
  for (let attempt = 0; attempt <= core.legs.length; attempt++) {
    checkServing(core, "write");
    const legs = [...core.legs];
    const plans = [...byRow].map(([row, touches]) =>
      planRow(g, row, touches, (i) => readable(legs[i]!), (i) => takesWrites(legs[i]!))
    );
    const held: Uint8Array[] = [];
    try {
      const old = await readOld(core, g, pool, legs, plans, held);
      if (old === undefined) continue;
      const parity = plans.map((p) => newParity(g, pool, p, data, old.get(p.row)!, held));
      return await writeRows(core, g, pool, legs, plans, parity, data, fua, held);
    } finally {
      for (const b of held) pool.put(b);
    }
  }
  throw tooFewLegs(core, "write");
}

/** Old bytes by row and leg; undefined when a leg failed a read (it is failed: plan again). */
async function readOld(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  legs: readonly Leg[],
  plans: readonly RowPlan[],
  held: Uint8Array[],
): Promise<Map<number, Map<number, Uint8Array>> | undefined> {
  const old = new Map<number, Map<number, Uint8Array>>();
  const ops = [];
  for (const p of plans) {
    const got = new Map<number, Uint8Array>();
    old.set(p.row, got);
    for (const leg of p.reads) {
      // rmw reads of a data unit take only its written columns; everything else [lo, hi).
      const unit = g.unitOn(p.row, leg);
      const t = p.strategy === "rmw" && unit >= 0
        ? p.touches.find((x) => x.unit === unit)!
        : undefined;
      const from = t?.from ?? p.lo;
      const length = (t?.to ?? p.hi) - from;
      const scratch = pool.get(length);
      held.push(scratch);
      const l = legs[leg]!;
      ops.push({
        leg: l,
        epoch: l.epoch,
        run: legRead(core, l, g.legOffset(p.row, from), length, scratch.subarray(0, length)).then(
          (bytes) => void got.set(leg, bytes.subarray(0, length)),
        ),
      });
    }
  }
  const failed = await settleOnLegs(core, "read for a write", ops);
  return failed.length === 0 ? old : undefined;
}

/** The new parity over [lo, hi) of a row (undefined: no parity is written). */
function newParity(
  g: Geometry,
  pool: BufferPool,
  p: RowPlan,
  data: Uint8Array,
  old: ReadonlyMap<number, Uint8Array>,
  held: Uint8Array[],
): Uint8Array | undefined {
  if (p.strategy === "none") return undefined;
  const width = p.hi - p.lo;
  const buf = pool.get(width);
  held.push(buf);
  const parity = buf.subarray(0, width);
  const newBytes = (t: Touch) => data.subarray(t.at, t.at + t.to - t.from);
  if (p.strategy === "rmw") {
    parity.set(old.get(p.parityLeg)!);
    for (const t of p.touches) {
      // parity ^= old data ^ new data over the unit's written columns.
      const span = parity.subarray(t.from - p.lo, t.to - p.lo);
      xorInto(span, old.get(g.dataLeg(p.row, t.unit))!);
      xorInto(span, newBytes(t));
    }
    return parity;
  }
  // rebuild: the lost unit's old bytes are the XOR of every other leg's over [lo, hi).
  let lostOld: Uint8Array | undefined;
  if (p.strategy === "rebuild") {
    const b = pool.get(width);
    held.push(b);
    lostOld = b.subarray(0, width).fill(0);
    for (const bytes of old.values()) xorInto(lostOld, bytes);
  }
  // The first unit is copied in, the others xored onto it (no pass over zeros).
  for (let unit = 0; unit < g.k; unit++) {
    const t = p.touches.find((x) => x.unit === unit);
    let bytes: Uint8Array;
    if (t !== undefined && t.from <= p.lo && t.to >= p.hi) {
      bytes = data.subarray(t.at + p.lo - t.from, t.at + p.hi - t.from);
    } else {
      // Old bytes over [lo, hi) (scratch we own), the written columns overlaid with new ones.
      bytes = unit === p.rebuilt ? lostOld! : old.get(g.dataLeg(p.row, unit))!;
      if (t !== undefined) bytes.set(newBytes(t), t.from - p.lo);
    }
    if (unit === 0) parity.set(bytes);
    else xorInto(parity, bytes);
  }
  return parity;
}

/** One leg's part of a write: leg bytes at `offset`. */
interface Piece {
  readonly offset: number;
  readonly bytes: Uint8Array;
}

/**
 * Writes every row's data and parity units at once: what goes to one leg over consecutive rows
 * (its units lie back to back there) is one request, copied into a pooled buffer (`held`).
 */
async function writeRows(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  legs: readonly Leg[],
  plans: readonly RowPlan[],
  parity: readonly (Uint8Array | undefined)[],
  data: Uint8Array,
  fua: boolean,
  held: Uint8Array[],
): Promise<Written> {
  const sentAt = new Map<Leg, number>();
  const missed = new Set<Leg>();
  const ops: { leg: Leg; epoch: number; run: Promise<void> }[] = [];
  const pieces = new Map<Leg, Piece[]>();
  const send = (leg: Leg, offset: number, bytes: Uint8Array) => {
    if (!takesWrites(leg)) {
      missed.add(leg);
      return;
    }
    let list = pieces.get(leg);
    if (list === undefined) pieces.set(leg, list = []);
    list.push({ offset, bytes });
  };
  const flushRun = (leg: Leg, run: readonly Piece[]) => {
    let bytes = run[0]!.bytes;
    if (run.length > 1) {
      const length = run.reduce((n, p) => n + p.bytes.length, 0);
      const buffer = pool.get(length);
      held.push(buffer);
      bytes = buffer.subarray(0, length);
      let at = 0;
      for (const p of run) {
        bytes.set(p.bytes, at);
        at += p.bytes.length;
      }
    }
    sentAt.set(leg, leg.epoch);
    ops.push({ leg, epoch: leg.epoch, run: legWrite(core, leg, run[0]!.offset, bytes, fua) });
  };
  plans.forEach((p, i) => {
    for (const t of p.touches) {
      send(
        legs[g.dataLeg(p.row, t.unit)]!,
        g.legOffset(p.row, t.from),
        data.subarray(t.at, t.at + t.to - t.from),
      );
    }
    const bytes = parity[i];
    if (bytes !== undefined) send(legs[p.parityLeg]!, g.legOffset(p.row, p.lo), bytes);
    else missed.add(legs[p.parityLeg]!);
  });
  for (const [leg, list] of pieces) {
    list.sort((a, b) => a.offset - b.offset);
    let run: Piece[] = [list[0]!];
    for (const p of list.slice(1)) {
      const last = run[run.length - 1]!;
      if (last.offset + last.bytes.length === p.offset) run.push(p);
      else {
        flushRun(leg, run);
        run = [p];
      }
    }
    flushRun(leg, run);
  }
  const failed = await settleOnLegs(core, "write", ops);
  for (const leg of sentAt.keys()) if (!failed.some((f) => f.leg === leg)) leg.writes++;
  for (const f of failed) missed.add(f.leg);
  return { sentAt, failed: new Set(failed.map((f) => f.leg)), missed: [...missed] };
}
