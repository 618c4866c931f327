/** Mirror behaviour under leg failure: degraded writes, read failover, timeouts, no stale reads. */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { BlockError } from "../block/contract.ts";
import { MirrorMapping } from "./mirror.ts";
import { FaultyDevice } from "../../tests/support/faulty_device.ts";
import { MemoryLogger } from "../../util/log.ts";

const MiB = 1024 * 1024;

function mirrorOf(n: number, legTimeoutMs = 1000) {
  const legs = Array.from(
    { length: n },
    () => new FaultyDevice(new MemoryBlockDevice({ size: MiB })),
  );
  const logger = new MemoryLogger();
  const mirror = new MirrorMapping(legs, { legTimeoutMs, logger });
  return { legs, mirror, logger };
}

function pattern(byte: number, length = 4096): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

Deno.test("mirror writes reach every leg and reads spread over them", async () => {
  const { legs, mirror } = mirrorOf(3);
  await mirror.write(8192, pattern(7), false);
  for (const leg of legs) assert.deepEqual(await leg.inner.read(8192, 4096), pattern(7));
  for (let i = 0; i < 6; i++) assert.deepEqual(await mirror.read(8192, 4096), pattern(7));
  assert.deepEqual(mirror.legs().map((l) => l.reads), [2, 2, 2]);
});

Deno.test("a failing leg leaves the set and client I/O goes on", async () => {
  const { legs, mirror, logger } = mirrorOf(2);
  legs[1]!.mode = "error";
  await mirror.write(0, pattern(1), true);
  assert.equal(mirror.inSync, 1);
  assert.equal(mirror.legs()[1]!.state, "out");
  assert.ok(logger.has("left the in-sync set"));
  legs[1]!.mode = "healthy";
  // The leg that left is never read again: it missed the write above.
  for (let i = 0; i < 4; i++) assert.deepEqual(await mirror.read(0, 4096), pattern(1));
  assert.equal(mirror.legs()[1]!.reads, 0);
  await mirror.flush();
});

Deno.test("a read error fails over to another leg", async () => {
  const { legs, mirror } = mirrorOf(2);
  await mirror.write(0, pattern(3), false);
  legs[0]!.mode = "error";
  legs[1]!.mode = "healthy";
  for (let i = 0; i < 3; i++) assert.deepEqual(await mirror.read(0, 4096), pattern(3));
  assert.equal(mirror.inSync, 1);
});

Deno.test("a leg that hangs is timed out and the write is acknowledged by the others", async () => {
  const { legs, mirror } = mirrorOf(3, 50);
  legs[2]!.mode = "hang";
  await mirror.write(4096, pattern(9), false);
  assert.equal(mirror.legs()[2]!.state, "out");
  assert.match(mirror.legs()[2]!.reason ?? "", /did not answer in time/);
  legs[2]!.releaseHung();
});

Deno.test("with no in-sync leg left, I/O fails with EIO", async () => {
  const { legs, mirror } = mirrorOf(2);
  for (const leg of legs) leg.mode = "error";
  await assert.rejects(
    mirror.write(0, pattern(1), false),
    (e) => e instanceof BlockError && e.code === "EIO",
  );
  await assert.rejects(mirror.read(0, 4096), (e) => e instanceof BlockError && e.code === "EIO");
});

Deno.test("request errors reach the client and fail no leg", async () => {
  const legs = [
    new MemoryBlockDevice({ size: MiB, readOnly: true }),
    new MemoryBlockDevice({ size: MiB, readOnly: true }),
  ];
  const mirror = new MirrorMapping(legs);
  await assert.rejects(
    mirror.write(0, pattern(1), false),
    (e) => e instanceof BlockError && e.code === "EPERM",
  );
  await assert.rejects(mirror.read(MiB, 1), (e) => e instanceof BlockError && e.code === "EINVAL");
  assert.equal(mirror.inSync, 2);
});

Deno.test("overlapping writes are applied in the same order on every leg", async () => {
  // Leg 1 is slow for the first write only; without ordering, the second write would land first
  // there and the legs would disagree.
  const fast = new MemoryBlockDevice({ size: MiB });
  const slowInner = new MemoryBlockDevice({ size: MiB });
  let delayNext = true;
  const slow = new FaultyDevice(slowInner);
  const origWrite = slow.write.bind(slow);
  slow.write = async (offset, data, fua) => {
    if (delayNext) {
      delayNext = false;
      await new Promise((r) => setTimeout(r, 30));
    }
    return origWrite(offset, data, fua);
  };
  const mirror = new MirrorMapping([fast, slow]);
  await Promise.all([mirror.write(0, pattern(1), false), mirror.write(0, pattern(2), false)]);
  assert.deepEqual(await fast.read(0, 4096), await slowInner.read(0, 4096));
  assert.deepEqual(await fast.read(0, 4096), pattern(2));
});

Deno.test("a leg that answers a read after it timed out never writes into the caller's buffer", async () => {
  const slowInner = new MemoryBlockDevice({ size: MiB });
  const fast = new MemoryBlockDevice({ size: MiB });
  await slowInner.write(0, pattern(0xee), false);
  await fast.write(0, pattern(0x11), false);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  // Leg 0 answers only after it was abandoned, and then fills whatever buffer it was given.
  const late = {
    ...fast,
    info: () => slowInner.info(),
    read: async (offset: number, length: number, into?: Uint8Array) => {
      await gate;
      return slowInner.read(offset, length, into);
    },
    close: () => slowInner.close(),
  } as unknown as MemoryBlockDevice;
  const mirror = new MirrorMapping([late, fast], { legTimeoutMs: 30 });
  const into = new Uint8Array(4096);
  const got = await mirror.read(0, 4096, into);
  assert.deepEqual(got, pattern(0x11));
  release();
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(into, pattern(0x11), "the abandoned leg wrote into the caller's buffer");
});
