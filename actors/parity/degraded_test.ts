/**
 * Parity with media: writes of every shape keep every stripe adding up; with one leg out reads
 * are reconstructed and writes go on (its misses marked); the returning leg is rebuilt from the
 * bitmap (only what it missed), a leg on new media in full; two legs out fail cleanly with EIO.
 */
import assert from "node:assert/strict";
import { BlockError } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { states, until } from "../../tests/support/mirror_fixture.ts";
import { Geometry } from "./geometry.ts";
import {
  CHUNK,
  MiB,
  Model,
  parityFixture,
  pattern,
  stripesNotAddingUp,
  UNIT,
} from "./test_support.ts";

const SIZE = 4 * MiB;

/** Writes of every shape: inside a unit, across units, a full row, several rows, unaligned. */
const SHAPES: readonly [number, number][] = [
  [0, 4096],
  [UNIT - 4096, 8192],
  [3 * UNIT, 2 * UNIT],
  [5 * UNIT + 512, 3 * UNIT + 1000],
  [8 * UNIT, 8 * UNIT],
  [20 * UNIT + 7, 1],
  [30 * UNIT - 100, 200],
];

async function writeAll(
  device: { write(o: number, d: Uint8Array, f: boolean): Promise<void> },
  model: Model,
  seed: number,
  shift = 0,
) {
  for (const [i, [offset, length]] of SHAPES.entries()) {
    const data = pattern(seed * 100 + i, length);
    await device.write(offset + shift, data, false);
    model.write(offset + shift, data);
  }
}

async function expectModel(
  device: { read(o: number, n: number): Promise<Uint8Array> },
  model: Model,
  upTo: number,
) {
  for (let at = 0; at < upTo; at += 256 * 1024) {
    const n = Math.min(256 * 1024, upTo - at);
    assert.deepEqual(await device.read(at, n), model.slice(at, n), `read at ${at}`);
  }
}

for (const n of [3, 4, 5]) {
  Deno.test(`${n} legs: writes of every shape keep every stripe adding up`, async () => {
    const f = await parityFixture(n, { size: SIZE });
    try {
      await until("in sync", () => f.mirror.inSync() === n);
      const model = new Model(f.mirror.info().size);
      await writeAll(f.mirror.device, model, 1);
      await writeAll(f.mirror.device, model, 2, UNIT / 2);
      await expectModel(f.mirror.device, model, 40 * UNIT);
      assert.deepEqual(await stripesNotAddingUp(f.legs), []);
    } finally {
      await f.close();
    }
  });
}

Deno.test("one leg out: reads reconstruct, writes go on, the leg is rebuilt from the bitmap", async () => {
  const f = await parityFixture(3, { size: SIZE });
  try {
    await until("in sync", () => f.mirror.inSync() === 3);
    const model = new Model(f.mirror.info().size);
    await writeAll(f.mirror.device, model, 1);
    f.faulty[1]!.mode = "error";
    // Reads of its units: reconstructed from the other two.
    await expectModel(f.mirror.device, model, 40 * UNIT);
    assert.equal(states(f.mirror)[1], "out");
    // Writes go on, of every shape (its units, the parity on it, both).
    await writeAll(f.mirror.device, model, 3, 4096);
    await expectModel(f.mirror.device, model, 40 * UNIT);
    // It lacks the chunks written while out, and a little more (the activity log), not all.
    const out = f.mirror.legs()[1]!.outOfSyncBytes;
    assert.ok(out > 0 && out < f.legs[1]!.info().size / 2, `out of sync: ${out}`);
    const before = f.mirror.legs()[1]!.copiedBytes;
    f.faulty[1]!.mode = "healthy";
    f.mirror.legReachable("leg1");
    await until("rebuilt", () => f.mirror.inSync() === 3);
    // Only chunks it lacked are rebuilt, and of those only the ones it holds wrong are written.
    const copied = f.mirror.legs()[1]!.copiedBytes - before;
    assert.ok(copied > 0 && copied <= out, `copied ${copied} of ${out} out of sync`);
    assert.deepEqual(await stripesNotAddingUp(f.legs), []);
    // Its own units are right again: read with another leg out.
    f.faulty[0]!.mode = "error";
    await expectModel(f.mirror.device, model, 40 * UNIT);
  } finally {
    await f.close();
  }
});

Deno.test("two legs out: reads and writes fail with EIO and say which legs", async () => {
  const f = await parityFixture(4, { size: SIZE });
  try {
    await until("in sync", () => f.mirror.inSync() === 4);
    await f.mirror.device.write(0, pattern(1, 3 * UNIT), false);
    f.faulty[0]!.mode = "error";
    f.faulty[2]!.mode = "error";
    const eio = (e: unknown) => {
      assert.ok(e instanceof BlockError && e.code === "EIO", String(e));
      assert.match(e.message, /parity needs 3 of 4 legs in sync/);
      return true;
    };
    await assert.rejects(f.mirror.device.read(0, 3 * UNIT), eio);
    await assert.rejects(f.mirror.device.write(0, pattern(2, 4096), false), eio);
    await assert.rejects(f.mirror.device.read(0, 3 * UNIT), eio);
    // Suspending a third leg is refused: it would take away what is left.
    await assert.rejects(
      f.mirror.act({ action: "suspend", leg: "leg1" }),
      /needs 3 in-sync legs/,
    );
  } finally {
    await f.close();
  }
});

Deno.test("a leg on new media is rebuilt in full from the others", async () => {
  const legs = [0, 1, 2].map(() => new MemoryBlockDevice({ size: SIZE }));
  let f = await parityFixture(legs, { size: SIZE });
  const model = new Model(f.mirror.info().size);
  await until("in sync", () => f.mirror.inSync() === 3);
  await writeAll(f.mirror.device, model, 5);
  await f.close();
  legs[2] = new MemoryBlockDevice({ size: SIZE }); // the media was replaced
  f = await parityFixture(legs, { size: SIZE });
  try {
    await until("rebuilt in full", () => f.mirror.inSync() === 3);
    assert.equal(f.mirror.legs()[2]!.resyncedBytes, new Geometry(3, UNIT, SIZE).legBytes);
    assert.deepEqual(await stripesNotAddingUp(legs), []);
    f.faulty[0]!.mode = "error";
    await expectModel(f.mirror.device, model, 40 * UNIT);
  } finally {
    await f.close();
  }
});

Deno.test("writes during a rebuild land right on stale and rebuilt chunks alike", async () => {
  const f = await parityFixture(3, {
    size: SIZE,
    pace: { floorBytesPerSec: 1024 * 1024, ceilingBytesPerSec: 2 * 1024 * 1024, parallel: 1 },
  });
  try {
    await until("in sync", () => f.mirror.inSync() === 3);
    const model = new Model(f.mirror.info().size);
    await f.mirror.act({ action: "dirty", leg: "leg2" });
    await until("rebuilding", () => states(f.mirror)[2] === "rebuilding");
    // Every row, its parity on each leg in turn, partly and wholly written while leg2 fills.
    for (let row = 0; row < 24; row++) {
      const g = new Geometry(3, UNIT, SIZE);
      const offset = row * g.rowBytes + (row % 3) * 4096;
      const data = pattern(row, row % 2 === 0 ? 8192 : g.rowBytes - (row % 3) * 4096);
      await f.mirror.device.write(offset, data, false);
      model.write(offset, data);
      await expectModel(f.mirror.device, model, 2 * CHUNK);
    }
    await until("rebuilt", () => f.mirror.inSync() === 3, 20_000);
    assert.deepEqual(await stripesNotAddingUp(f.legs), []);
    f.faulty[1]!.mode = "error";
    await expectModel(f.mirror.device, model, 30 * UNIT);
  } finally {
    await f.close();
  }
});

Deno.test("two legs lost: the storage stays down until the operator marks one clean with force", async () => {
  const f = await parityFixture(3, { size: SIZE });
  try {
    await until("in sync", () => f.mirror.inSync() === 3);
    await f.mirror.device.write(0, pattern(7, 4 * UNIT), false);
    f.faulty[0]!.mode = "error";
    await f.mirror.device.write(0, pattern(8, 4 * UNIT), false); // leg0 misses it
    f.faulty[1]!.mode = "error";
    await assert.rejects(f.mirror.device.write(8 * UNIT, pattern(9, 4096), false));
    for (const i of [0, 1]) {
      f.faulty[i]!.mode = "healthy";
      f.mirror.legReachable(`leg${i}`);
    }
    // Each needs the other to be rebuilt from (RAID 5 rebuilds from every other leg).
    await until("both judged", () => states(f.mirror).filter((s) => s === "out").length === 2);
    await assert.rejects(f.mirror.device.read(0, 4096), /parity needs 2 of 3 legs/);
    // leg1 left last: it missed no acknowledged write; its data is taken as it is.
    await f.mirror.act({ action: "clean", leg: "leg1", force: true });
    await until("rebuilt", () => f.mirror.inSync() === 3);
    assert.deepEqual(await f.mirror.device.read(0, 4 * UNIT), pattern(8, 4 * UNIT));
    assert.deepEqual(await stripesNotAddingUp(f.legs), []);
  } finally {
    await f.close();
  }
});
