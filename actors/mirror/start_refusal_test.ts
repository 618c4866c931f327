/**
 * A start whose reachable legs hold only an interrupted resync while another leg cannot be
 * reached: the unreachable one may be the consistent leg. The start used to go on refusing to
 * serve and then wait for good once that leg came back (no leg served to judge it against; the
 * simulator's `sticky-start-refusal`, seeds 335, 3918, 4367, 8993). It is refused now, so the
 * start is tried again and finds the leg once it is back.
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../runtime/system.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { FaultyDevice } from "../../tests/support/faulty_device.ts";
import { faultyMedia, fill, mirrorFixture, until } from "../../tests/support/mirror_fixture.ts";
import { spawnMirror } from "./actor.ts";
import { FLAG_CLEAN_STOP, FLAG_INCONSISTENT } from "./generations.ts";
import { StartRefused } from "./start.ts";

/** Two legs that served together; then leg0 became a resync target that never finished. */
async function legsAfterAnInterruptedResync(): Promise<MemoryBlockDevice[]> {
  const f = await mirrorFixture(2);
  await until("in sync", () => f.mirror.inSync() === 2);
  await f.mirror.device.write(0, fill(7), true);
  await f.close();
  const flags = (await f.legs[0]!.media()).flags;
  await f.legs[0]!.updateMedia({ flags: (flags | FLAG_INCONSISTENT) & ~FLAG_CLEAN_STOP });
  return f.legs;
}

async function start(legs: MemoryBlockDevice[], unreachable: boolean, force = false) {
  const system = new ActorSystem({ node: "test" });
  const faulty = legs.map((l) => {
    const d = new FaultyDevice(l);
    d.close = () => Promise.resolve(d.releaseHung());
    return d;
  });
  if (unreachable) faulty[1]!.mode = "error";
  try {
    const mirror = await spawnMirror(system, faulty, {
      probeMs: 0,
      legTimeoutMs: 500,
      force,
      media: legs.map((l, i) => faultyMedia(l, faulty[i]!)),
    });
    return { mirror, system };
  } catch (error) {
    await system.shutdown();
    throw error;
  }
}

Deno.test("start: only an interrupted resync reachable and a leg unreachable is refused, naming it", async () => {
  const legs = await legsAfterAnInterruptedResync();
  await assert.rejects(
    start(legs, true),
    (e) =>
      e instanceof StartRefused && /leg0 hold\(s\) an interrupted resync/.test(e.message) &&
      /leg1 cannot be reached/.test(e.message),
  );
  // Tried again once leg1 is back: it is the reference, leg0 is resynced from it.
  const { mirror, system } = await start(legs, false);
  try {
    await until("both in sync", () => mirror.inSync() === 2);
    assert.deepEqual(await mirror.device.read(0, 4096), fill(7));
  } finally {
    await mirror.close();
    await system.shutdown();
  }
});

Deno.test("start: forced, it comes up serving nothing until a leg is marked clean", async () => {
  const legs = await legsAfterAnInterruptedResync();
  const { mirror, system } = await start(legs, true, true);
  try {
    assert.equal(mirror.inSync(), 0);
    await assert.rejects(mirror.device.read(0, 4096));
  } finally {
    await mirror.close();
    await system.shutdown();
  }
});
