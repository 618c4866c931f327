/** A mirror with media: misses tracked, returning legs resynced by bitmap, split brain refused. */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { MirrorMapping } from "../mapping/mirror.ts";
import { decide } from "./generations.ts";
import { FaultyDevice } from "../../tests/support/faulty_device.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const CHUNK = 256 * 1024;

function mirrorOn(legs: MemoryBlockDevice[]) {
  const faulty = legs.map((l) => new FaultyDevice(l));
  const mirror = new MirrorMapping(faulty, {
    media: legs,
    chunkSize: CHUNK,
    legTimeoutMs: 500,
    probeMs: 0,
    activityIdleMs: 50,
  });
  return { faulty, mirror };
}

const fill = (byte: number, n = 4096) => new Uint8Array(n).fill(byte);

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("a leg that missed writes gets only the chunks it missed", async () => {
  const legs = [0, 1, 2].map(() => new MemoryBlockDevice({ size: SIZE }));
  const { faulty, mirror } = mirrorOn(legs);
  await mirror.start();
  // New media: two legs are resynced in full from the first (digests skip equal zeros).
  await until("initial sync", () => mirror.inSync === 3);
  await mirror.write(0, fill(1), false);
  faulty[2]!.mode = "error";
  await mirror.write(CHUNK * 3, fill(2), false); // leg2 misses chunk 3
  await mirror.write(CHUNK * 9 + 10, fill(3, 100), false); // and chunk 9
  assert.equal(mirror.legs()[2]!.state, "out");
  assert.equal(mirror.legs()[2]!.outOfSyncBytes, 2 * CHUNK);
  const g0 = (await legs[0]!.media()).generations;
  const g2 = (await legs[2]!.media()).generations;
  assert.notEqual(g0.current, g2.current, "the serving legs rotated their generation");
  // The bitmap tracks from leg2's generation or earlier: leg2 is judged for a bitmap resync.
  assert.equal(decide(g0, g2).kind, "bitmap");
  faulty[2]!.mode = "healthy";
  const before = mirror.legs()[2]!.copiedBytes;
  mirror.legReachable(2);
  await until("leg2 back", () => mirror.inSync === 3);
  assert.equal(mirror.legs()[2]!.copiedBytes - before, 2 * CHUNK);
  assert.deepEqual(await legs[2]!.read(CHUNK * 3, 4096), fill(2));
  assert.deepEqual(await legs[2]!.read(CHUNK * 9 + 10, 100), fill(3, 100));
  assert.equal(
    (await legs[2]!.media()).generations.current,
    (await legs[0]!.media()).generations.current,
  );
  await mirror.close();
});

Deno.test("split brain is refused and nothing is overwritten", async () => {
  const legs = [0, 1].map(() => new MemoryBlockDevice({ size: SIZE }));
  let { faulty, mirror } = mirrorOn(legs);
  await mirror.start();
  await until("initial sync", () => mirror.inSync === 2);
  // Partition: leg1 leaves, leg0 takes a write alone.
  faulty[1]!.mode = "error";
  await mirror.write(0, fill(7), false);
  // Another mirror on leg1 alone (the other side of the partition) takes a write too.
  const lone = new MirrorMapping([legs[1]!, new MemoryBlockDevice({ size: SIZE })], {
    media: [legs[1]!, undefined],
    chunkSize: CHUNK,
    probeMs: 0,
  });
  await lone.start();
  await lone.suspend("leg1");
  await lone.write(0, fill(8), false);
  // Reassembled: neither side may win silently.
  ({ faulty, mirror } = mirrorOn(legs));
  await mirror.start();
  assert.deepEqual(mirror.legs().map((l) => l.state), ["split-brain", "split-brain"]);
  assert.match(mirror.legs()[0]!.reason!, /split brain/);
  await assert.rejects(mirror.read(0, 4096), /split brain/);
  assert.deepEqual(await legs[0]!.read(0, 4096), fill(7));
  assert.deepEqual(await legs[1]!.read(0, 4096), fill(8));
  // The administrator picks: leg0 clean, leg1 dirty -> resynced from leg0.
  await mirror.markClean("leg0");
  await mirror.markDirty("leg1");
  await until("leg1 resynced", () => mirror.inSync === 2);
  assert.deepEqual(await legs[1]!.read(0, 4096), fill(7));
  await mirror.close();
});

Deno.test("verify finds a chunk changed behind the mirror's back and repairs it", async () => {
  const legs = [0, 1, 2].map(() => new MemoryBlockDevice({ size: SIZE }));
  const { mirror } = mirrorOn(legs);
  await mirror.start();
  await until("initial sync", () => mirror.inSync === 3);
  await mirror.write(CHUNK * 5, fill(5), true);
  await legs[1]!.write(CHUNK * 5, fill(66), false); // corruption on one leg's media
  const { mismatches } = await mirror.verify();
  assert.equal(mismatches, 1);
  await until("repair", () => mirror.inSync === 3);
  assert.deepEqual(await legs[1]!.read(CHUNK * 5, 4096), fill(5));
  await mirror.close();
});

Deno.test("suspend tracks misses, resume resyncs them", async () => {
  const legs = [0, 1].map(() => new MemoryBlockDevice({ size: SIZE }));
  const { mirror } = mirrorOn(legs);
  await mirror.start();
  await until("initial sync", () => mirror.inSync === 2);
  await mirror.suspend("leg1");
  await assert.rejects(mirror.suspend("leg0"), /last in-sync/);
  await mirror.write(CHUNK, fill(4), false);
  assert.equal(mirror.legs()[1]!.outOfSyncBytes, CHUNK);
  const before = mirror.legs()[1]!.copiedBytes;
  await mirror.resume("leg1");
  await until("resumed", () => mirror.inSync === 2);
  assert.equal(mirror.legs()[1]!.copiedBytes - before, CHUNK);
  assert.deepEqual(await legs[1]!.read(CHUNK, 4096), fill(4));
  await mirror.close();
});
