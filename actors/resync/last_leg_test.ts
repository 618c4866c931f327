/**
 * A mirror that lost its last in-sync leg (hung) takes that leg back once it answers: it holds
 * every acknowledged write. A leg that was out or rebuilding then is never promoted, and a leg
 * that returns with other media is not taken back.
 */
import assert from "node:assert/strict";
import type { MediaDevice } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { MirrorMapping } from "../mapping/mirror.ts";
import { FaultyDevice } from "../../tests/support/faulty_device.ts";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const CHUNK = 256 * 1024;

/** The leg's media answers (or hangs, or fails) as its faulty device does: one process. */
function mediaOf(leg: MemoryBlockDevice, faulty: FaultyDevice): MediaDevice {
  const gate = () => faulty.mode === "healthy" ? Promise.resolve() : faulty.flush();
  return {
    media: () => gate().then(() => leg.media()),
    updateMedia: (patch) => gate().then(() => leg.updateMedia(patch)),
    readBitmap: () => gate().then(() => leg.readBitmap()),
    storeBitmap: (at, bytes) => gate().then(() => leg.storeBitmap(at, bytes)),
    digest: (offset, length, chunk) => gate().then(() => leg.digest(offset, length, chunk)),
  };
}

/** Mutable so a test can slow a resync down once the initial sync is done. */
interface Pace {
  floorBytesPerSec?: number;
  ceilingBytesPerSec?: number;
  parallel?: number;
}

function twoLegMirror(pace: Pace = {}) {
  const legs = [0, 1].map(() => new MemoryBlockDevice({ size: SIZE }));
  const faulty = legs.map((l) => new FaultyDevice(l));
  const mirror = new MirrorMapping(faulty, {
    media: legs.map((l, i) => mediaOf(l, faulty[i]!)),
    chunkSize: CHUNK,
    legTimeoutMs: 300,
    probeMs: 0,
    activityIdleMs: 50,
    pace,
  });
  return { legs, faulty, mirror };
}

const fill = (byte: number, n = 4096) => new Uint8Array(n).fill(byte);

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const states = (mirror: MirrorMapping) => mirror.legs().map((l) => l.state);

Deno.test("the last in-sync leg, hung while the other rebuilds, is taken back on resume", async () => {
  const pace: Pace = {};
  const { legs, faulty, mirror } = twoLegMirror(pace);
  try {
    await mirror.start();
    await until("initial sync", () => mirror.inSync === 2);
    await mirror.write(0, fill(1), true);
    // leg0 fails and misses eight chunks; its rebuild is slowed to about a chunk a second.
    faulty[0]!.mode = "error";
    for (let c = 1; c <= 8; c++) await mirror.write(c * CHUNK, fill(c + 1), false);
    assert.deepEqual(states(mirror), ["out", "in-sync"]);
    pace.floorBytesPerSec = pace.ceilingBytesPerSec = CHUNK;
    pace.parallel = 1;
    faulty[0]!.mode = "healthy";
    mirror.legReachable(0);
    await until("leg0 rebuilding", () => mirror.legs()[0]!.state === "rebuilding");
    // Now the only in-sync leg hangs: the mirror is down and fails I/O, acknowledging nothing.
    faulty[1]!.mode = "hang";
    await assert.rejects(mirror.read(CHUNK, 4096), /no in-sync leg/);
    assert.equal(mirror.inSync, 0);
    await assert.rejects(mirror.write(9 * CHUNK, fill(99), false), /no in-sync leg/);
    // The hung copies give up (as a node's request deadline would): leg0's rebuild stops.
    faulty[1]!.releaseHung();
    await until("leg0 out", () => mirror.legs()[0]!.state === "out");
    // leg0 was rebuilding when the mirror went down: it may be stale and is never promoted.
    await mirror.resume("leg0");
    mirror.legReachable(0);
    assert.deepEqual(states(mirror), ["out", "out"]);
    await assert.rejects(mirror.read(CHUNK, 4096), /no in-sync leg/);
    // leg1 answers again: resume takes it back as the reference, then leg0 resumes its rebuild.
    faulty[1]!.mode = "healthy";
    pace.floorBytesPerSec = pace.ceilingBytesPerSec = 1024 * MiB;
    await mirror.resume("leg1");
    assert.equal(mirror.legs()[1]!.state, "in-sync");
    for (let c = 1; c <= 8; c++) assert.deepEqual(await mirror.read(c * CHUNK, 4096), fill(c + 1));
    await mirror.write(10 * CHUNK, fill(10), false);
    await until("leg0 back in sync", () => mirror.inSync === 2);
    for (let c = 0; c <= 10; c++) {
      assert.deepEqual(
        await legs[0]!.read(c * CHUNK, 4096),
        await legs[1]!.read(c * CHUNK, 4096),
        `chunk ${c} converged`,
      );
    }
    assert.deepEqual(await legs[0]!.read(10 * CHUNK, 4096), fill(10));
    assert.deepEqual(
      await legs[0]!.read(9 * CHUNK, 4096),
      fill(0),
      "the refused write landed nowhere",
    );
  } finally {
    await mirror.close();
  }
});

Deno.test("the last in-sync leg is taken back when its link is back", async () => {
  const { legs, faulty, mirror } = twoLegMirror();
  try {
    await mirror.start();
    await until("initial sync", () => mirror.inSync === 2);
    faulty[0]!.mode = "error";
    await mirror.write(3 * CHUNK, fill(3), false);
    faulty[1]!.mode = "hang";
    await assert.rejects(mirror.flush(), /no in-sync leg/);
    assert.deepEqual(states(mirror), ["out", "out"]);
    faulty[0]!.mode = "healthy";
    mirror.legReachable(0); // the stale leg answers first: it stays out
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(states(mirror), ["out", "out"]);
    faulty[1]!.mode = "healthy";
    faulty[1]!.releaseHung();
    mirror.legReachable(1);
    await until("both back in sync", () => mirror.inSync === 2);
    assert.deepEqual(await legs[0]!.read(3 * CHUNK, 4096), fill(3));
  } finally {
    await mirror.close();
  }
});

Deno.test("a last in-sync leg that returns with other media is not taken back", async () => {
  const { legs, faulty, mirror } = twoLegMirror();
  try {
    await mirror.start();
    await until("initial sync", () => mirror.inSync === 2);
    faulty[0]!.mode = "error";
    await mirror.write(0, fill(5), false);
    faulty[1]!.mode = "hang";
    await assert.rejects(mirror.read(0, 4096), /no in-sync leg/);
    // While it was away, leg1 got new media (its age is gone).
    await legs[1]!.updateMedia({ flags: 0 });
    faulty[1]!.mode = "healthy";
    faulty[1]!.releaseHung();
    await mirror.resume("leg1");
    assert.equal(mirror.inSync, 0);
    await assert.rejects(mirror.read(0, 4096), /no in-sync leg/);
  } finally {
    await mirror.close();
  }
});
