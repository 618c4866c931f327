/**
 * A mirror that lost its last in-sync leg (hung) takes that leg back once it answers: it holds
 * every acknowledged write. A leg that was out or rebuilding then is never promoted, and a leg
 * that returns with other media is not taken back.
 */
import assert from "node:assert/strict";
import { fill, mirrorFixture, states, until } from "../../tests/support/mirror_fixture.ts";

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;
const CHUNK = 256 * 1024;

/** Mutable so a test can slow a resync down once the initial sync is done. */
interface Pace {
  floorBytesPerSec?: number;
  ceilingBytesPerSec?: number;
  parallel?: number;
}

function twoLegMirror(pace: Pace = {}) {
  return mirrorFixture(2, { size: SIZE, chunkSize: CHUNK, legTimeoutMs: 300, pace });
}

Deno.test("the last in-sync leg, hung while the other rebuilds, is taken back on resume", async () => {
  const pace: Pace = {};
  const f = await twoLegMirror(pace);
  const { legs, faulty, mirror } = f;
  try {
    await until("initial sync", () => mirror.inSync() === 2);
    await mirror.device.write(0, fill(1), true);
    // leg0 fails and misses eight chunks; its rebuild is slowed to about a chunk a second.
    faulty[0]!.mode = "error";
    for (let c = 1; c <= 8; c++) await mirror.device.write(c * CHUNK, fill(c + 1), false);
    assert.deepEqual(states(mirror), ["out", "in-sync"]);
    pace.floorBytesPerSec = pace.ceilingBytesPerSec = CHUNK;
    pace.parallel = 1;
    faulty[0]!.mode = "healthy";
    mirror.legReachable("leg0");
    await until("leg0 rebuilding", () => mirror.legs()[0]!.state === "rebuilding");
    // Now the only in-sync leg hangs: the mirror is down and fails I/O, acknowledging nothing.
    faulty[1]!.mode = "hang";
    await assert.rejects(mirror.device.read(CHUNK, 4096), /no in-sync leg/);
    assert.equal(mirror.inSync(), 0);
    await assert.rejects(mirror.device.write(9 * CHUNK, fill(99), false), /no in-sync leg/);
    // The hung copies give up (as a node's request deadline would): leg0's rebuild stops.
    faulty[1]!.releaseHung();
    await until("leg0 out", () => mirror.legs()[0]!.state === "out");
    // leg0 was rebuilding when the mirror went down: it may be stale and is never promoted.
    await mirror.act({ action: "resume", leg: "leg0" });
    mirror.legReachable("leg0");
    await until("leg0 judged", () => /waiting/.test(mirror.legs()[0]!.reason ?? ""));
    assert.deepEqual(states(mirror), ["out", "out"]);
    await assert.rejects(mirror.device.read(CHUNK, 4096), /no in-sync leg/);
    // leg1 answers again: resume takes it back as the reference, then leg0 resumes its rebuild.
    faulty[1]!.mode = "healthy";
    pace.floorBytesPerSec = pace.ceilingBytesPerSec = 1024 * MiB;
    await mirror.act({ action: "resume", leg: "leg1" });
    await until("leg1 taken back", () => mirror.legs()[1]!.state === "in-sync");
    for (let c = 1; c <= 8; c++) {
      assert.deepEqual(await mirror.device.read(c * CHUNK, 4096), fill(c + 1));
    }
    await mirror.device.write(10 * CHUNK, fill(10), false);
    await until("leg0 back in sync", () => mirror.inSync() === 2);
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
    await f.close();
  }
});

Deno.test("the last in-sync leg is taken back when its link is back", async () => {
  const f = await twoLegMirror();
  const { legs, faulty, mirror } = f;
  try {
    await until("initial sync", () => mirror.inSync() === 2);
    faulty[0]!.mode = "error";
    await mirror.device.write(3 * CHUNK, fill(3), false);
    faulty[1]!.mode = "hang";
    await assert.rejects(mirror.device.flush(), /no in-sync leg/);
    assert.deepEqual(states(mirror), ["out", "out"]);
    faulty[0]!.mode = "healthy";
    mirror.legReachable("leg0"); // the stale leg answers first: it stays out
    await until("leg0 judged", () => /waiting/.test(mirror.legs()[0]!.reason ?? ""));
    assert.deepEqual(states(mirror), ["out", "out"]);
    faulty[1]!.mode = "healthy";
    faulty[1]!.releaseHung();
    mirror.legReachable("leg1");
    await until("both back in sync", () => mirror.inSync() === 2);
    assert.deepEqual(await legs[0]!.read(3 * CHUNK, 4096), fill(3));
  } finally {
    await f.close();
  }
});

Deno.test("a last in-sync leg that returns with other media is not taken back", async () => {
  const f = await twoLegMirror();
  const { legs, faulty, mirror } = f;
  try {
    await until("initial sync", () => mirror.inSync() === 2);
    faulty[0]!.mode = "error";
    await mirror.device.write(0, fill(5), false);
    faulty[1]!.mode = "hang";
    await assert.rejects(mirror.device.read(0, 4096), /no in-sync leg/);
    // While it was away, leg1 got new media (its age is gone).
    await legs[1]!.updateMedia({ flags: 0 });
    faulty[1]!.mode = "healthy";
    faulty[1]!.releaseHung();
    await mirror.act({ action: "resume", leg: "leg1" });
    await until("leg1 judged", () => mirror.legs()[1]!.state !== "judging");
    assert.equal(mirror.inSync(), 0);
    await assert.rejects(mirror.device.read(0, 4096), /no in-sync leg/);
  } finally {
    await f.close();
  }
});
