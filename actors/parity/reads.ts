/**
 * The parity read path. A read is cut into the pieces of data units it covers; a unit on an
 * in-sync leg is read from that leg, a unit on a leg that is not (out, or rebuilding) is
 * reconstructed as the XOR of the same bytes on every other leg of its row. Pieces that follow
 * each other on one leg are read with one request. A read that reconstructs holds the range lock
 * over its rows, so it never mixes the halves of a write in flight (new data, old parity). A leg
 * that fails a read is failed and the read planned again without it; with too few legs in sync
 * the client hears EIO.
 */
import { landedIn } from "../block/contract.ts";
import type { MirrorCore } from "../mirror/core.ts";
import type { Leg } from "../mirror/leg.ts";
import type { BufferPool } from "../../util/buffer_pool.ts";
import type { Geometry } from "./geometry.ts";
import { checkServing, legRead, readable, settleOnLegs, tooFewLegs } from "./legs.ts";
import { xorInto } from "./xor.ts";

/** Where bytes a leg read returns go: copied to, or xored into, the read's buffer at `dest`. */
interface Sink {
  /** Offset within the leg read. */
  readonly at: number;
  readonly length: number;
  readonly dest: number;
  readonly xor: boolean;
}

/** One request to one leg, and where its bytes go. */
interface LegPiece {
  readonly leg: number;
  readonly offset: number;
  length: number;
  readonly sinks: Sink[];
}

/** The leg requests of a read of [offset, offset+length); `reconstructs` when any unit is. */
export function planRead(
  g: Geometry,
  offset: number,
  length: number,
  canRead: (leg: number) => boolean,
): { pieces: LegPiece[]; reconstructs: { dest: number; length: number }[] } {
  const byLeg = new Map<number, LegPiece[]>();
  const reconstructs: { dest: number; length: number }[] = [];
  const add = (leg: number, legOffset: number, n: number, dest: number, xor: boolean) => {
    let list = byLeg.get(leg);
    if (list === undefined) byLeg.set(leg, list = []);
    const last = list[list.length - 1];
    if (last !== undefined && last.offset + last.length === legOffset) {
      last.sinks.push({ at: last.length, length: n, dest, xor });
      last.length += n;
    } else {list.push({
        leg,
        offset: legOffset,
        length: n,
        sinks: [{ at: 0, length: n, dest, xor }],
      });}
  };
  for (let at = 0; at < length;) {
    const p = g.locate(offset + at);
    const n = Math.min(g.unit - p.col, length - at);
    const legOffset = g.legOffset(p.row, p.col);
    if (canRead(p.leg)) add(p.leg, legOffset, n, at, false);
    else {
      reconstructs.push({ dest: at, length: n });
      for (let leg = 0; leg < g.n; leg++) if (leg !== p.leg) add(leg, legOffset, n, at, true);
    }
    at += n;
  }
  return { pieces: [...byLeg.values()].flat(), reconstructs };
}

/** Reads device bytes [offset, offset+length) of a parity storage. */
export async function readParity(
  core: MirrorCore,
  g: Geometry,
  pool: BufferPool,
  offset: number,
  length: number,
  into?: Uint8Array,
): Promise<Uint8Array> {
  let lastError: unknown;
  // Each attempt after a failure drops a leg from the in-sync set: bounded by the legs.
  for (let attempt = 0; attempt <= core.legs.length; attempt++) {
    checkServing(core, "read");
    const legs = [...core.legs];
    const plan = planRead(g, offset, length, (i) => readable(legs[i]!));
    // A later attempt reads into its own buffer: an abandoned one may still land in `into`.
    const out = attempt === 0 && into !== undefined
      ? into.subarray(0, length)
      : new Uint8Array(length);
    const run = () => readPieces(core, legs, pool, plan.pieces, plan.reconstructs, out);
    let failed;
    if (plan.reconstructs.length === 0) failed = await run();
    else {
      const rows = g.rowsOf(offset, length);
      const range = g.rowRange(rows.first, rows.last);
      failed = await core.lock(range.offset, range.length, run);
    }
    if (failed.length === 0) return out;
    lastError = failed[0]!.error;
  }
  throw tooFewLegs(core, "read", lastError);
}

/** Issues every piece at once and applies its sinks; returns the legs that failed. */
async function readPieces(
  core: MirrorCore,
  legs: readonly Leg[],
  pool: BufferPool,
  pieces: readonly LegPiece[],
  reconstructs: readonly { dest: number; length: number }[],
  out: Uint8Array,
) {
  for (const r of reconstructs) out.fill(0, r.dest, r.dest + r.length);
  const ops = pieces.map((p) => {
    const leg = legs[p.leg]!;
    const sink = p.sinks[0]!;
    // One copy into the caller's buffer: read straight there.
    if (p.sinks.length === 1 && !sink.xor) {
      const view = out.subarray(sink.dest, sink.dest + p.length);
      return {
        leg,
        epoch: leg.epoch,
        run: legRead(core, leg, p.offset, p.length, view).then((data) => {
          if (!landedIn(data, view)) view.set(data.subarray(0, p.length));
        }),
      };
    }
    const scratch = pool.get(p.length);
    return {
      leg,
      epoch: leg.epoch,
      run: legRead(core, leg, p.offset, p.length, scratch.subarray(0, p.length)).then((data) => {
        for (const s of p.sinks) {
          const from = data.subarray(s.at, s.at + s.length);
          if (s.xor) xorInto(out.subarray(s.dest, s.dest + s.length), from);
          else out.set(from, s.dest);
        }
      }).finally(() => pool.put(scratch)),
    };
  });
  return await settleOnLegs(core, "read", ops);
}
