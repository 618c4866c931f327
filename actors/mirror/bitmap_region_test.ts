/**
 * Case 2 of the mirror-state issue: a mirror whose bitmap does not fit a leg's media region used
 * to skip the pages past the end silently (with chunkSize 16K and 2 GiB legs, bits above 512 MiB
 * were never stored). Old media that cannot hold the bitmap is now refused at start with what to
 * do; new media holds a bitmap for any chunk size, and every page is stored.
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../runtime/system.ts";
import { FileBlockDevice } from "../block/file.ts";
import { spawnMirror } from "./actor.ts";
import { StartRefused } from "./start.ts";
import { fill, until } from "../../tests/support/mirror_fixture.ts";
import { FaultyDevice } from "../../tests/support/faulty_device.ts";

const GiB = 1024 * 1024 * 1024;
const CHUNK = 16 * 1024;

async function withLegs(
  chunkSize: number | undefined,
  fn: (legs: FileBlockDevice[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-bitmap-region-" });
  const legs: FileBlockDevice[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      legs.push(
        await FileBlockDevice.create({
          path: `${dir}/leg${i}.img`,
          size: 2 * GiB,
          ...(chunkSize === undefined ? {} : { chunkSize }),
        }),
      );
    }
    await fn(legs);
  } finally {
    await Promise.allSettled(legs.map((l) => l.close()));
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a mirror refuses media whose bitmap region cannot hold its bitmap, saying what to do", async () => {
  // Media made before regions fitted any chunk size: room for 64 KiB chunks only.
  await withLegs(64 * 1024, async (legs) => {
    const system = new ActorSystem({ node: "test" });
    try {
      await assert.rejects(
        spawnMirror(system, legs, { media: legs, chunkSize: CHUNK, probeMs: 0 }),
        (e) =>
          e instanceof StartRefused && /keeps 4096 bytes of write-intent bitmap/.test(e.message) &&
          /needs 16384/.test(e.message) && /larger chunkSize/.test(e.message),
      );
    } finally {
      await system.shutdown();
    }
  });
});

Deno.test("new media stores every bitmap page: a miss above 512 MiB is on the media", async () => {
  await withLegs(undefined, async (legs) => {
    const system = new ActorSystem({ node: "test" });
    const faulty = legs.map((l) => {
      const f = new FaultyDevice(l);
      f.close = () => Promise.resolve();
      return f;
    });
    const mirror = await spawnMirror(system, faulty, {
      media: legs,
      chunkSize: CHUNK,
      probeMs: 0,
      legTimeoutMs: 1000,
    });
    try {
      await until("initial sync", () => mirror.inSync() === 2, 60_000);
      faulty[1]!.mode = "error";
      const at = 1.5 * GiB;
      await mirror.device.write(at, fill(7), true);
      assert.equal(mirror.legs()[1]!.state, "out");
      // The chunk's bit is durable on the leg that served, in the page past the first 4 KiB.
      const bits = await legs[0]!.readBitmap();
      const chunk = at / CHUNK;
      assert.ok((bits[chunk >> 3]! & (1 << (chunk & 7))) !== 0, "bit stored past 512 MiB");
    } finally {
      await mirror.close();
      await system.shutdown();
    }
  });
});
