/** Tests of the ask table: deadlines on the injected clock, one timer for many asks, cleanup. */
import assert from "node:assert/strict";
import { ManualClock } from "../../util/clock.ts";
import { AskTable } from "./ask.ts";

const target = { node: "n", path: "p", incarnation: 1 };

function table() {
  const clock = new ManualClock();
  const asks = new AskTable(clock, (_t, ms) => new Error(`timeout ${ms}`));
  const outcomes = new Map<number, string>();
  const add = (id: number, ms: number) =>
    asks.add(
      id,
      target,
      ms,
      (v) => outcomes.set(id, `ok ${v}`),
      (e) => outcomes.set(id, e.message),
    );
  return { clock, asks, outcomes, add };
}

Deno.test("asks time out at their own deadlines, in order, on one timer", () => {
  const { clock, asks, outcomes, add } = table();
  add(1, 30);
  add(2, 10);
  add(3, 20);
  add(4, 20);
  assert.equal(clock.pending, 1);
  assert.ok(asks.resolve(3, "three"));
  clock.advance(10);
  assert.deepEqual([...outcomes], [[3, "ok three"], [2, "timeout 10"]]);
  clock.advance(10);
  assert.equal(outcomes.get(4), "timeout 20");
  assert.equal(outcomes.has(1), false);
  clock.advance(10);
  assert.equal(outcomes.get(1), "timeout 30");
  assert.equal(asks.size, 0);
  assert.equal(clock.pending, 0);
  assert.equal(asks.resolve(1, "late"), false);
});

Deno.test("a resolved ask never times out, while a later one still does", () => {
  const { clock, asks, outcomes, add } = table();
  for (let i = 0; i < 100; i++) {
    add(i, 50);
    assert.ok(asks.resolve(i, i));
    clock.advance(1);
  }
  add(100, 50);
  clock.advance(49);
  assert.equal(outcomes.size, 100);
  clock.advance(1);
  assert.equal(outcomes.get(100), "timeout 50");
  assert.equal(clock.pending, 0);
});

Deno.test("rejectWhere fails matching asks at once; close drops the timer", () => {
  const { clock, asks, outcomes, add } = table();
  add(1, 100);
  add(2, 100);
  asks.rejectWhere(() => true, () => new Error("gone"));
  assert.deepEqual([...outcomes.values()], ["gone", "gone"]);
  assert.equal(clock.pending, 1);
  asks.close();
  assert.equal(clock.pending, 0);
});
