/** The parity address math, checked exhaustively on small geometries and against md's table. */
import assert from "node:assert/strict";
import { Geometry } from "./geometry.ts";

const U = 4096;

Deno.test("left-symmetric: md's table for 4 legs", () => {
  const g = new Geometry(4, U, 4 * U);
  // md(4) "left-symmetric": each row lists what legs 0..3 hold (data unit number, or P).
  const table = [
    ["D0", "D1", "D2", "P"],
    ["D4", "D5", "P", "D3"],
    ["D8", "P", "D6", "D7"],
    ["P", "D9", "D10", "D11"],
  ];
  for (let row = 0; row < 4; row++) {
    for (let leg = 0; leg < 4; leg++) {
      const unit = g.unitOn(row, leg);
      const got = unit < 0 ? "P" : `D${row * 3 + unit}`;
      assert.equal(got, table[row]![leg], `row ${row} leg ${leg}`);
    }
  }
});

Deno.test("every unit round-trips, every row has one parity and each leg once", () => {
  for (let n = 3; n <= 8; n++) {
    const rows = 3 * n + 1;
    const g = new Geometry(n, U, rows * U + 100);
    assert.equal(g.rows, rows);
    assert.equal(g.legBytes, rows * U);
    assert.equal(g.size, rows * U * (n - 1));
    const parityCount = new Array(n).fill(0);
    for (let row = 0; row < rows; row++) {
      const p = g.parityLeg(row);
      parityCount[p]++;
      const seen = new Set<number>([p]);
      assert.equal(g.unitOn(row, p), -1);
      for (let unit = 0; unit < n - 1; unit++) {
        const leg = g.dataLeg(row, unit);
        assert.ok(!seen.has(leg), `n ${n} row ${row}: leg ${leg} holds two units`);
        seen.add(leg);
        assert.equal(g.unitOn(row, leg), unit);
        for (const col of [0, 1, U / 2, U - 1]) {
          const offset = g.offsetOf(row, unit, col);
          assert.deepEqual(g.locate(offset), { row, unit, col, leg });
        }
      }
      assert.equal(seen.size, n);
    }
    // Rotation: over N consecutive rows every leg holds parity once.
    for (let leg = 0; leg < n; leg++) {
      assert.ok(parityCount[leg] >= 3, `n ${n}: leg ${leg} holds parity ${parityCount[leg]} times`);
    }
  }
});

Deno.test("device offsets are dense: consecutive bytes visit units in order", () => {
  const g = new Geometry(3, U, 8 * U);
  let last = { row: 0, unit: 0 };
  for (let offset = 0; offset < g.size; offset += U) {
    const p = g.locate(offset);
    assert.equal(p.col, 0);
    if (offset > 0) {
      const step = (p.row - last.row) * g.k + (p.unit - last.unit);
      assert.equal(step, 1, `at ${offset}`);
    }
    last = p;
  }
  assert.equal(g.locate(g.size - 1).row, g.rows - 1);
});

Deno.test("rows of a range, and the range of rows", () => {
  const g = new Geometry(5, U, 64 * U);
  assert.deepEqual(g.rowsOf(0, 1), { first: 0, last: 0 });
  assert.deepEqual(g.rowsOf(0, g.rowBytes), { first: 0, last: 0 });
  assert.deepEqual(g.rowsOf(g.rowBytes - 1, 2), { first: 0, last: 1 });
  assert.deepEqual(g.rowsOf(3 * g.rowBytes, 0), { first: 3, last: 3 });
  assert.deepEqual(g.rowRange(2, 4), { offset: 2 * g.rowBytes, length: 3 * g.rowBytes });
});

Deno.test("bad geometry names what is wrong", () => {
  assert.throws(() => new Geometry(2, U, U), /at least 3 legs/);
  assert.throws(() => new Geometry(3, 3000, U), /power of two/);
  assert.throws(() => new Geometry(3, 2048, U), /power of two of at least 4096/);
});
