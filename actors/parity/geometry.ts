/**
 * Where each byte of a parity storage lives: RAID 5 with md's left-symmetric layout. N legs, K =
 * N − 1 data units per row; row r keeps its parity unit on leg (N − 1 − r mod N) and its data
 * units on the legs after it, wrapping round, so parity rotates over every leg and sequential
 * data visits every leg in turn. Every leg holds row r at leg bytes [r·unit, (r+1)·unit): rows
 * line up on all legs, and leg byte ranges map to whole rows of the device.
 */

export interface Place {
  /** Row (stripe) of the byte. */
  readonly row: number;
  /** Data unit within the row, 0..K−1. */
  readonly unit: number;
  /** Byte within the unit. */
  readonly col: number;
  /** Leg holding it. */
  readonly leg: number;
}

export class Geometry {
  /** Legs. */
  readonly n: number;
  /** Data units per row. */
  readonly k: number;
  /** Stripe unit in bytes (a power of two). */
  readonly unit: number;
  /** Bytes of a row of data (K units). */
  readonly rowBytes: number;
  /** Rows in the device. */
  readonly rows: number;
  /** Leg bytes used (rows × unit). */
  readonly legBytes: number;
  /** Device bytes (K × legBytes). */
  readonly size: number;

  constructor(legs: number, unit: number, smallestLeg: number) {
    if (!Number.isSafeInteger(legs) || legs < 3) {
      throw new RangeError(`parity needs at least 3 legs (2 data and 1 parity), got ${legs}`);
    }
    if (!Number.isSafeInteger(unit) || unit < 4096 || (unit & (unit - 1)) !== 0) {
      throw new RangeError(`the stripe unit must be a power of two of at least 4096, got ${unit}`);
    }
    this.n = legs;
    this.k = legs - 1;
    this.unit = unit;
    this.rowBytes = unit * this.k;
    this.rows = Math.floor(smallestLeg / unit);
    this.legBytes = this.rows * unit;
    this.size = this.legBytes * this.k;
  }

  /** The leg holding row `row`'s parity unit. */
  parityLeg(row: number): number {
    return this.n - 1 - (row % this.n);
  }

  /** The leg holding data unit `unit` of row `row`. */
  dataLeg(row: number, unit: number): number {
    return (this.parityLeg(row) + 1 + unit) % this.n;
  }

  /** Which data unit of row `row` leg `leg` holds, or −1 for its parity unit. */
  unitOn(row: number, leg: number): number {
    const p = this.parityLeg(row);
    return leg === p ? -1 : (leg - p - 1 + this.n) % this.n;
  }

  /** Where device byte `offset` lives. */
  locate(offset: number): Place {
    const u = Math.floor(offset / this.unit);
    const row = Math.floor(u / this.k);
    const unit = u % this.k;
    return { row, unit, col: offset % this.unit, leg: this.dataLeg(row, unit) };
  }

  /** Device offset of byte `col` of data unit `unit` in row `row`. */
  offsetOf(row: number, unit: number, col: number): number {
    return row * this.rowBytes + unit * this.unit + col;
  }

  /** Leg offset of byte `col` of row `row` (the same on every leg). */
  legOffset(row: number, col: number): number {
    return row * this.unit + col;
  }

  /** The device bytes whole rows [first, last] cover. */
  rowRange(first: number, last: number): { offset: number; length: number } {
    return { offset: first * this.rowBytes, length: (last - first + 1) * this.rowBytes };
  }

  /** The rows device bytes [offset, offset+length) touch (at least one). */
  rowsOf(offset: number, length: number): { first: number; last: number } {
    return {
      first: Math.floor(offset / this.rowBytes),
      last: Math.floor((offset + Math.max(length, 1) - 1) / this.rowBytes),
    };
  }
}
