/**
 * How one row (stripe) of a write gets its new parity, chosen per row from what can be read:
 * - full: every data unit is written whole; parity is the XOR of the new data, nothing is read;
 * - rmw (read-modify-write): old parity ^ old data ^ new data, reading the written bytes and
 *   the parity over the columns touched;
 * - rcw (reconstruct-write): the XOR of every unit's new-or-old bytes, reading the bytes of the
 *   units not written whole;
 * - rebuild: a unit the write needs the old bytes of sits on a leg that cannot be read; its old
 *   bytes are the XOR of every other leg's, then as rcw;
 * - none: the parity leg is out: only data is written (its miss is recorded).
 * rmw and rcw are both valid most of the time: the one reading fewer bytes wins. A leg that
 * cannot be read is never an input: a rebuilding leg's parity is computed from the row's data.
 */
import type { Geometry } from "./geometry.ts";

/** What of data unit `unit` the write covers: columns [from, to). */
export interface Touch {
  readonly unit: number;
  readonly from: number;
  readonly to: number;
  /** Offset of these bytes in the client's buffer. */
  readonly at: number;
}

export type Strategy = "full" | "rmw" | "rcw" | "rebuild" | "none";

export interface RowPlan {
  readonly row: number;
  readonly parityLeg: number;
  readonly touches: readonly Touch[];
  /** Columns whose parity changes: the span of the touched columns. */
  readonly lo: number;
  readonly hi: number;
  readonly strategy: Strategy;
  /** Legs to read over [lo, hi) (rmw reads only the touched columns of data units). */
  readonly reads: readonly number[];
  /** The data unit rebuilt from the others (strategy "rebuild"), else −1. */
  readonly rebuilt: number;
}

/** The touches of a write of `length` bytes at `offset`, grouped by row. */
export function touchesByRow(g: Geometry, offset: number, length: number): Map<number, Touch[]> {
  const rows = new Map<number, Touch[]>();
  for (let at = 0; at < length;) {
    const p = g.locate(offset + at);
    const n = Math.min(g.unit - p.col, length - at);
    let list = rows.get(p.row);
    if (list === undefined) rows.set(p.row, list = []);
    list.push({ unit: p.unit, from: p.col, to: p.col + n, at });
    at += n;
  }
  return rows;
}

/**
 * The plan of one row. `canRead(leg)`: the leg is in sync; `takesWrites(leg)`: in sync or
 * rebuilding. At most one leg is neither readable nor fine (the storage serves only so).
 */
export function planRow(
  g: Geometry,
  row: number,
  touches: readonly Touch[],
  canRead: (leg: number) => boolean,
  takesWrites: (leg: number) => boolean,
): RowPlan {
  const parityLeg = g.parityLeg(row);
  const lo = Math.min(...touches.map((t) => t.from));
  const hi = Math.max(...touches.map((t) => t.to));
  const base = { row, parityLeg, touches, lo, hi, rebuilt: -1 };
  if (!takesWrites(parityLeg)) return { ...base, strategy: "none", reads: [] };
  const whole = (unit: number) =>
    touches.some((t) => t.unit === unit && t.from <= lo && t.to >= hi);
  if (touches.length === g.k && lo === 0 && hi === g.unit && touches.every((t) => whole(t.unit))) {
    return { ...base, strategy: "full", reads: [] };
  }
  const dataLeg = (unit: number) => g.dataLeg(row, unit);
  const touched = touches.map((t) => t.unit);
  const untouchedOrPart = Array.from({ length: g.k }, (_, u) => u).filter((u) => !whole(u));
  const rmwOk = canRead(parityLeg) && touched.every((u) => canRead(dataLeg(u)));
  const rcwOk = untouchedOrPart.every((u) => canRead(dataLeg(u)));
  const rmwBytes = touches.reduce((s, t) => s + t.to - t.from, 0) + (hi - lo);
  const rcwBytes = untouchedOrPart.length * (hi - lo);
  if (rmwOk && (!rcwOk || rmwBytes <= rcwBytes)) {
    return { ...base, strategy: "rmw", reads: [parityLeg, ...touched.map(dataLeg)] };
  }
  if (rcwOk) return { ...base, strategy: "rcw", reads: untouchedOrPart.map(dataLeg) };
  // One data leg cannot be read and its old bytes are needed: every other leg gives them.
  const lost = untouchedOrPart.find((u) => !canRead(dataLeg(u)))!;
  const reads: number[] = [];
  for (let leg = 0; leg < g.n; leg++) if (leg !== dataLeg(lost)) reads.push(leg);
  return { ...base, strategy: "rebuild", reads, rebuilt: lost };
}
