/** A mirror with media: misses tracked, returning legs resynced by bitmap, split brain refused. */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { decide } from "./generations.ts";
import { fill, mirrorFixture, states, until } from "../../tests/support/mirror_fixture.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const CHUNK = 256 * 1024;
const opts = { size: SIZE, chunkSize: CHUNK } as const;

Deno.test("a leg that missed writes gets only the chunks it missed", async () => {
  const f = await mirrorFixture(3, opts);
  const { mirror, legs, faulty } = f;
  try {
    // New media: two legs are resynced in full from the first (digests skip equal zeros).
    await until("initial sync", () => mirror.inSync() === 3);
    await mirror.device.write(0, fill(1), false);
    faulty[2]!.mode = "error";
    await mirror.device.write(CHUNK * 3, fill(2), false); // leg2 misses chunk 3
    await mirror.device.write(CHUNK * 9 + 10, fill(3, 100), false); // and chunk 9
    assert.equal(mirror.legs()[2]!.state, "out");
    // What it lacks: the two chunks it missed, and the chunk written just before it left
    // (not yet flushed on every leg, so maybe not durable on it).
    assert.equal(mirror.legs()[2]!.outOfSyncBytes, 3 * CHUNK);
    const g0 = (await legs[0]!.media()).generations;
    const g2 = (await legs[2]!.media()).generations;
    assert.notEqual(g0.current, g2.current, "the serving legs rotated their generation");
    // The bitmap tracks from leg2's generation or earlier: leg2 is judged for a bitmap resync.
    assert.equal(decide(g0, g2).kind, "bitmap");
    faulty[2]!.mode = "healthy";
    const before = mirror.legs()[2]!.copiedBytes;
    mirror.legReachable("leg2");
    await until("leg2 back", () => mirror.inSync() === 3);
    assert.equal(mirror.legs()[2]!.copiedBytes - before, 2 * CHUNK, "chunk 0 matched: skipped");
    assert.deepEqual(await legs[2]!.read(CHUNK * 3, 4096), fill(2));
    assert.deepEqual(await legs[2]!.read(CHUNK * 9 + 10, 100), fill(3, 100));
    assert.equal(
      (await legs[2]!.media()).generations.current,
      (await legs[0]!.media()).generations.current,
    );
  } finally {
    await f.close();
  }
});

Deno.test("split brain is refused and nothing is overwritten", async () => {
  const legs = [0, 1].map(() => new MemoryBlockDevice({ size: SIZE }));
  let f = await mirrorFixture(legs, opts);
  await until("initial sync", () => f.mirror.inSync() === 2);
  // Partition: leg1 leaves, leg0 takes a write alone.
  f.faulty[1]!.mode = "error";
  await f.mirror.device.write(0, fill(7), false);
  await f.close();
  // Another mirror on leg1 alone (the other side of the partition) takes a write too.
  const spare = new MemoryBlockDevice({ size: SIZE });
  const lone = await mirrorFixture([legs[1]!, spare], {
    ...opts,
    names: ["leg1", "spare"],
    force: true,
  });
  await until("spare synced", () => lone.mirror.inSync() === 2);
  await lone.mirror.act({ action: "suspend", leg: "spare" });
  await lone.mirror.device.write(0, fill(8), false);
  await lone.close();
  // Reassembled: neither side may win silently.
  f = await mirrorFixture(legs, opts);
  try {
    assert.deepEqual(states(f.mirror), ["split-brain", "split-brain"]);
    assert.match(f.mirror.legs()[0]!.reason!, /split brain/);
    await assert.rejects(f.mirror.device.read(0, 4096), /split brain/);
    assert.deepEqual(await legs[0]!.read(0, 4096), fill(7));
    assert.deepEqual(await legs[1]!.read(0, 4096), fill(8));
    // Marking a split-brain side clean needs --force: it hides the other side's writes.
    await assert.rejects(f.mirror.act({ action: "clean", leg: "leg0", force: false }), /--force/);
    // The administrator picks: leg0 clean (forced), leg1 dirty -> resynced from leg0.
    await f.mirror.act({ action: "clean", leg: "leg0", force: true });
    await f.mirror.act({ action: "dirty", leg: "leg1" });
    await until("leg1 resynced", () => f.mirror.inSync() === 2);
    assert.deepEqual(await legs[1]!.read(0, 4096), fill(7));
  } finally {
    await f.close();
  }
});

Deno.test("verify with a majority repairs the odd leg out", async () => {
  const f = await mirrorFixture(3, opts);
  try {
    await until("initial sync", () => f.mirror.inSync() === 3);
    await f.mirror.device.write(CHUNK * 5, fill(5), true);
    await f.legs[1]!.write(CHUNK * 5, fill(66), false); // corruption on one leg's media
    const done = await f.mirror.act({ action: "verify" });
    assert.equal(done.verify?.mismatchedChunks, 1);
    assert.deepEqual(done.verify?.repairedBytes, { leg1: CHUNK });
    await until("repair", () => f.mirror.inSync() === 3);
    assert.deepEqual(await f.legs[1]!.read(CHUNK * 5, 4096), fill(5));
  } finally {
    await f.close();
  }
});

Deno.test("verify of two legs that disagree reports and repairs nothing, unless told which to trust", async () => {
  // Case 4 of the mirror-state issue: the tie used to go to leg 0, so a corrupt leg 0 was
  // copied over the good leg 1.
  const f = await mirrorFixture(2, opts);
  try {
    await until("initial sync", () => f.mirror.inSync() === 2);
    await f.mirror.device.write(CHUNK * 2, fill(2), true);
    await f.legs[0]!.write(CHUNK * 2, fill(0xbd, 4), false); // 4 bytes over leg 0's media
    const found = await f.mirror.act({ action: "verify" });
    assert.equal(found.verify?.mismatchedBytes, CHUNK);
    assert.equal(found.verify?.unresolvedBytes, CHUNK);
    assert.deepEqual(found.verify?.repairedBytes, {});
    assert.match(found.message, /--repair-from/);
    assert.deepEqual(states(f.mirror), ["in-sync", "in-sync"]);
    assert.deepEqual(await f.legs[1]!.read(CHUNK * 2, 4096), fill(2), "the good leg is untouched");
    // The operator names leg1: leg0 is repaired from it.
    const repaired = await f.mirror.act({ action: "verify", repairFrom: "leg1" });
    assert.deepEqual(repaired.verify?.repairedBytes, { leg0: CHUNK });
    await until("repair", () => f.mirror.inSync() === 2);
    assert.deepEqual(await f.legs[0]!.read(CHUNK * 2, 4096), fill(2));
  } finally {
    await f.close();
  }
});

Deno.test("suspend tracks misses, resume resyncs them; clean of a leg that missed writes is refused", async () => {
  const f = await mirrorFixture(2, opts);
  const { mirror, legs } = f;
  try {
    await until("initial sync", () => mirror.inSync() === 2);
    await mirror.act({ action: "suspend", leg: "leg1" });
    await assert.rejects(mirror.act({ action: "suspend", leg: "leg0" }), /last in-sync/);
    await mirror.device.write(CHUNK, fill(4), false);
    assert.ok(mirror.legs()[1]!.outOfSyncBytes >= CHUNK);
    // Case 5 of the mirror-state issue: clean used to make it in-sync at once, and reads of
    // the chunk it missed returned old data.
    await assert.rejects(
      mirror.act({ action: "clean", leg: "leg1", force: false }),
      /missed writes.*--force/,
    );
    assert.equal(mirror.legs()[1]!.state, "suspended");
    const before = mirror.legs()[1]!.copiedBytes;
    await mirror.act({ action: "resume", leg: "leg1" });
    await until("resumed", () => mirror.inSync() === 2);
    assert.ok(mirror.legs()[1]!.copiedBytes - before >= CHUNK);
    assert.deepEqual(await legs[1]!.read(CHUNK, 4096), fill(4));
  } finally {
    await f.close();
  }
});

Deno.test("a resync actor that crashes is restarted by its supervisor and resumes", async () => {
  const f = await mirrorFixture(2, opts);
  try {
    await until("initial sync", () => f.mirror.inSync() === 2);
    f.faulty[1]!.mode = "error";
    for (let c = 0; c < 4; c++) await f.mirror.device.write(c * CHUNK, fill(c + 1), false);
    f.faulty[1]!.mode = "healthy";
    // A bug (not a leg's trouble) in the copy: the first write of the resync throws.
    const write = f.faulty[1]!.write.bind(f.faulty[1]!);
    let crashes = 1;
    f.faulty[1]!.write = (offset, data, fua) => {
      if (crashes-- > 0) throw new TypeError("a bug in the copy");
      return write(offset, data, fua);
    };
    f.mirror.legReachable("leg1");
    await until("leg1 back after a restart", () => f.mirror.inSync() === 2);
    assert.ok(f.logger.has("actor crashed"));
    for (let c = 0; c < 4; c++) {
      assert.deepEqual(await f.legs[1]!.read(c * CHUNK, 4096), fill(c + 1));
    }
  } finally {
    await f.close();
  }
});

Deno.test("a resync actor that keeps crashing is given up and its leg stays out", async () => {
  const f = await mirrorFixture(2, opts);
  try {
    await until("initial sync", () => f.mirror.inSync() === 2);
    f.faulty[1]!.mode = "error";
    await f.mirror.device.write(0, fill(9), false);
    f.faulty[1]!.mode = "healthy";
    f.faulty[1]!.write = () => {
      throw new TypeError("a bug that never goes away");
    };
    f.mirror.legReachable("leg1");
    await until(
      "the supervisor gives up",
      () => /crashed too often/.test(f.mirror.legs()[1]!.reason ?? ""),
      15_000,
    );
    assert.equal(f.mirror.legs()[1]!.state, "out");
    assert.deepEqual(await f.mirror.device.read(0, 4096), fill(9));
  } finally {
    await f.close();
  }
});
