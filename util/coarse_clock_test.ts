/** Coarse timers fire in order, never early, at most one bucket late, and cancel cleanly. */
import assert from "node:assert/strict";
import { ManualClock } from "./clock.ts";
import { CoarseClock } from "./coarse_clock.ts";

Deno.test("coarse clock: timers fire in due order, not early, within one bucket", () => {
  const base = new ManualClock();
  const clock = new CoarseClock(base, 5);
  const fired: [string, number][] = [];
  clock.setTimeout(() => fired.push(["b", base.now()]), 12);
  clock.setTimeout(() => fired.push(["a", base.now()]), 3);
  clock.setTimeout(() => fired.push(["c", base.now()]), 12);
  assert.equal(base.pending, 1, "one host timer for every deadline");
  base.advance(4);
  assert.deepEqual(fired, []);
  base.advance(1);
  assert.deepEqual(fired, [["a", 5]]);
  base.advance(20);
  assert.deepEqual(fired, [["a", 5], ["b", 15], ["c", 15]]);
  assert.equal(clock.pending, 0);
  assert.equal(base.pending, 0);
});

Deno.test("coarse clock: cancelled timers never fire and an idle clock holds no host timer", () => {
  const base = new ManualClock();
  const clock = new CoarseClock(base, 5);
  let fired = 0;
  const timers = Array.from({ length: 100 }, (_, i) => clock.setTimeout(() => fired++, 10 + i));
  for (const t of timers.slice(0, 99)) t.cancel();
  assert.equal(clock.pending, 1);
  timers[99]!.cancel();
  timers[99]!.cancel();
  assert.equal(clock.pending, 0);
  assert.equal(base.pending, 0);
  base.advance(1000);
  assert.equal(fired, 0);
  clock.setTimeout(() => fired++, 1);
  base.advance(5);
  assert.equal(fired, 1);
});
