/**
 * The write hole: a crash between a row's data write and its parity write leaves a stripe whose
 * parity does not match its data, and a later degraded read of that row would rebuild wrong
 * bytes. The crash is taken as a snapshot of the legs (data, media, bitmap) while the parity
 * leg's write hangs; a start on the snapshot must recompute the marked stripes' parity.
 */
import assert from "node:assert/strict";
import { BlockError } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { until } from "../../tests/support/mirror_fixture.ts";
import { Geometry } from "./geometry.ts";
import { parityFixture, pattern, stripesNotAddingUp, UNIT } from "./test_support.ts";

const SIZE = 4 * 1024 * 1024;

/** A memory leg whose data reads fail while `failReads` (its media still answers). */
class FailingReads extends MemoryBlockDevice {
  failReads = false;
  override read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    if (this.failReads) return Promise.reject(new BlockError("EIO", "injected read fault"));
    return super.read(offset, length, into);
  }
}

/** The leg as it would be found after a power cut now: its data, media and bitmap. */
async function snapshot(leg: MemoryBlockDevice): Promise<FailingReads> {
  const copy = new FailingReads({ size: leg.info().size });
  await copy.write(0, await leg.read(0, leg.info().size), false);
  const media = await leg.media();
  await copy.updateMedia({
    generations: media.generations,
    flags: media.flags,
    outdated: media.outdated,
    ...(media.storageId === undefined ? {} : { storageId: media.storageId }),
  });
  await copy.storeBitmap(0, await leg.readBitmap());
  return copy;
}

for (const n of [3, 4]) {
  Deno.test(`${n} legs: a crash between data and parity is repaired at the next start`, async () => {
    const g = new Geometry(n, UNIT, SIZE);
    const f = await parityFixture(n, { size: SIZE });
    let crashed: FailingReads[];
    const old = pattern(1, g.rowBytes);
    // All data units of row 0 but one: reconstruct-write (read the one left, never the parity)
    // is the cheaper plan, so the data lands and only the parity write hangs.
    const fresh = pattern(2, (n - 2) * UNIT);
    const dataLeg = g.dataLeg(0, 0);
    try {
      await until("in sync", () => f.mirror.inSync() === n);
      await f.mirror.device.write(0, old, false);
      f.faulty[g.parityLeg(0)]!.mode = "hang";
      // A partial write of row 0: its data lands, its parity hangs; the power goes now.
      const pending = f.mirror.device.write(0, fresh, false).catch(() => {});
      const landed = async () => (await f.legs[dataLeg]!.read(0, 4096))[0] === fresh[0];
      for (let i = 0; i < 400 && !(await landed()); i++) {
        await new Promise((r) => setTimeout(r, 1));
      }
      assert.ok(await landed(), "the data unit was written");
      crashed = await Promise.all(f.legs.map(snapshot));
      f.faulty[g.parityLeg(0)]!.mode = "healthy";
      await f.close();
      await pending;
    } catch (error) {
      await f.close();
      throw error;
    }
    // The hole is there: stripe 0 does not add up on the media as the crash left it.
    assert.deepEqual(await stripesNotAddingUp(crashed), [0]);
    const again = await parityFixture(crashed, { size: SIZE });
    try {
      await until("in sync", () => again.mirror.inSync() === n);
      assert.deepEqual(await stripesNotAddingUp(crashed), [], "the start recomputed the parity");
      const whole = await again.mirror.device.read(0, 4096);
      // Its unit rebuilt from the others (its leg out) is what the leg holds: no wrong bytes.
      again.faulty[dataLeg]!.mode = "error";
      assert.deepEqual(await again.mirror.device.read(0, 4096), whole);
      const repair = again.logger.entries.find((e) =>
        e.message === "parity of marked stripes recomputed at start"
      );
      assert.equal(repair?.fields.repairedStripes, 1);
    } finally {
      await again.close();
    }
  });
}

Deno.test("a start refused while repairing stamps nothing: the next start still repairs", async () => {
  // Found by sim seed 38: a leg failed a read during the repair, the refused start's stop
  // stamped the others as stopped cleanly, and the next start trusted the stale stripes.
  const g = new Geometry(3, UNIT, SIZE);
  const f = await parityFixture(3, { size: SIZE });
  let crashed: FailingReads[];
  const fresh = pattern(4, 4096);
  const dataLeg = g.dataLeg(0, 0);
  try {
    await until("in sync", () => f.mirror.inSync() === 3);
    await f.mirror.device.write(0, pattern(3, g.rowBytes), false);
    f.faulty[g.parityLeg(0)]!.mode = "hang";
    const pending = f.mirror.device.write(0, fresh, false).catch(() => {});
    const landed = async () => (await f.legs[dataLeg]!.read(0, 4096))[0] === fresh[0];
    for (let i = 0; i < 400 && !(await landed()); i++) {
      await new Promise((r) => setTimeout(r, 1));
    }
    crashed = await Promise.all(f.legs.map(snapshot));
    f.faulty[g.parityLeg(0)]!.mode = "healthy";
    await f.close();
    await pending;
  } catch (error) {
    await f.close();
    throw error;
  }
  assert.deepEqual(await stripesNotAddingUp(crashed), [0]);
  // A leg answers its media but fails data reads: the repair cannot be done, the start is
  // refused and stamps nothing.
  crashed[g.parityLeg(0)]!.failReads = true;
  await assert.rejects(
    parityFixture(crashed, { size: SIZE }).then((x) => x.close()),
    /repairing parity: leg2 failed a read/,
  );
  crashed[g.parityLeg(0)]!.failReads = false;
  const again = await parityFixture(crashed, { size: SIZE });
  try {
    await until("in sync", () => again.mirror.inSync() === 3);
    assert.deepEqual(await stripesNotAddingUp(crashed), []);
  } finally {
    await again.close();
  }
});
