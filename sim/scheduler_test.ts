/** Simulated time: timers fire in due order, a killed process runs nothing more, bounds hold. */
import assert from "node:assert/strict";
import { fork } from "./rng.ts";
import { Driver, ProcessClock, SimClock, SimLimitError } from "./scheduler.ts";

Deno.test("sim clock: timers fire in due order and time jumps to each", async () => {
  const sim = new SimClock(fork(1, "t"));
  const driver = new Driver(sim, { maxSteps: 1000 });
  const clock = new ProcessClock(sim);
  const fired: [string, number][] = [];
  clock.setTimeout(() => fired.push(["b", sim.now()]), 20);
  clock.setTimeout(() => fired.push(["a", sim.now()]), 10);
  clock.setTimeout(() => fired.push(["x", sim.now()]), 15).cancel();
  await driver.run(100);
  assert.deepEqual(fired, [["a", 10], ["b", 20]]);
  assert.equal(sim.now(), 100);
});

Deno.test("sim clock: a killed process's timers never fire, nor do ones it sets later", async () => {
  const sim = new SimClock(fork(1, "t"));
  const driver = new Driver(sim, { maxSteps: 1000 });
  const dead = new ProcessClock(sim);
  let fired = 0;
  dead.setTimeout(() => fired++, 10);
  dead.kill();
  dead.setTimeout(() => fired++, 10);
  await driver.run(100);
  assert.equal(fired, 0);
});

Deno.test("sim driver: a busy loop hits the step bound instead of running forever", async () => {
  const sim = new SimClock(fork(1, "t"));
  const driver = new Driver(sim, { maxSteps: 500 });
  const clock = new ProcessClock(sim);
  const again = () => void clock.setTimeout(again, 0);
  again();
  await assert.rejects(driver.run(10), SimLimitError);
});
