/**
 * The guard's own promises beyond the conformance suite: which error each bad request gets, and
 * how each emulation reaches the device underneath (recorded call by call).
 */
import assert from "node:assert/strict";
import {
  type BlockDevice,
  BlockError,
  type BlockErrorCode,
  type BlockInfo,
  type Extent,
  type ZeroOptions,
} from "./contract.ts";
import { guard, ZERO_BUFFER } from "./guard.ts";
import { MemoryBlockDevice } from "./memory.ts";

const MiB = 1024 * 1024;

/** Records every call that reaches it; capabilities are whatever the test says. */
class RecordingDevice implements BlockDevice {
  readonly calls: string[] = [];
  readonly writes: Uint8Array[] = [];
  readonly inner: MemoryBlockDevice;
  readonly #info: BlockInfo;
  extentsAnswer: Extent[] | undefined;

  constructor(caps: Partial<BlockInfo>) {
    this.inner = new MemoryBlockDevice({ size: caps.size ?? 4 * MiB });
    this.#info = { ...this.inner.info(), ...caps };
  }
  info(): BlockInfo {
    return this.#info;
  }
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    this.calls.push(`read ${offset}+${length}`);
    return this.inner.read(offset, length, into);
  }
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void> {
    this.calls.push(`write ${offset}+${data.length}${fua ? " fua" : ""}`);
    this.writes.push(data);
    return this.inner.write(offset, data, fua);
  }
  flush(): Promise<void> {
    this.calls.push("flush");
    return Promise.resolve();
  }
  trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.calls.push(`trim ${offset}+${length}${fua ? " fua" : ""}`);
    return this.inner.trim(offset, length, fua);
  }
  zero(offset: number, length: number, options: ZeroOptions): Promise<void> {
    this.calls.push(`zero ${offset}+${length}${options.fua ? " fua" : ""}`);
    return this.inner.zero(offset, length);
  }
  extents(offset: number, length: number): Promise<Extent[]> {
    this.calls.push(`extents ${offset}+${length}`);
    return this.extentsAnswer
      ? Promise.resolve(this.extentsAnswer)
      : this.inner.extents(offset, length);
  }
  cache(offset: number, length: number): Promise<void> {
    this.calls.push(`cache ${offset}+${length}`);
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.calls.push("close");
    return this.inner.close();
  }
}

async function rejects(p: Promise<unknown>, code: BlockErrorCode): Promise<void> {
  await assert.rejects(p, (e) => e instanceof BlockError && e.code === code);
}

const noZero = { fua: false, fastZero: false, mayTrim: false };

Deno.test("guard: zero without native zero writes from the one shared zero buffer, in pieces", async () => {
  const dev = new RecordingDevice({ canZero: false, canFastZero: false, maxBlock: 256 * 1024 });
  await dev.inner.write(0, new Uint8Array(MiB).fill(7), false);
  const g = guard(dev);
  assert.equal(g.info().canZero, true);
  assert.equal(g.info().canFastZero, false);
  await g.zero(1000, 600 * 1024, noZero);
  assert.deepEqual(dev.calls, [
    "write 1000+262144",
    "write 263144+262144",
    "write 525288+90112",
  ]);
  for (const w of dev.writes) assert.equal(w.buffer, ZERO_BUFFER.buffer);
  assert.ok(ZERO_BUFFER.every((b) => b === 0), "the shared buffer stays zero");
  const back = await dev.inner.read(0, MiB);
  assert.equal(back[999], 7);
  assert.ok(back.subarray(1000, 1000 + 600 * 1024).every((b) => b === 0));
  assert.equal(back[1000 + 600 * 1024], 7);
  await rejects(g.zero(0, 4096, { ...noZero, fastZero: true }), "ENOTSUP");
});

Deno.test("guard: FUA becomes write then flush when the device cannot FUA", async () => {
  const dev = new RecordingDevice({ canFua: false });
  const g = guard(dev);
  assert.equal(g.info().canFua, true);
  await g.write(0, new Uint8Array(512), true);
  await g.zero(4096, 4096, { ...noZero, fua: true });
  await g.trim(8192, 4096, true);
  assert.deepEqual(dev.calls, [
    "write 0+512",
    "flush",
    "zero 4096+4096",
    "flush",
    "trim 8192+4096",
    "flush",
  ]);
});

Deno.test("guard: native FUA passes through without an extra flush", async () => {
  const dev = new RecordingDevice({});
  const g = guard(dev);
  await g.write(0, new Uint8Array(512), true);
  await g.zero(0, 512, { ...noZero, fua: true });
  assert.deepEqual(dev.calls, ["write 0+512 fua", "zero 0+512 fua"]);
});

Deno.test("guard: a device with neither flush nor FUA refuses both with ENOTSUP", async () => {
  const dev = new RecordingDevice({ canFua: false, canFlush: false });
  const g = guard(dev);
  assert.equal(g.info().canFua, false);
  await rejects(g.write(0, new Uint8Array(512), true), "ENOTSUP");
  await rejects(g.flush(), "ENOTSUP");
  await g.write(0, new Uint8Array(512), false);
  assert.deepEqual(dev.calls, ["write 0+512"]);
});

Deno.test("guard: trim without native trim is a no-op, advertised as such", async () => {
  const dev = new RecordingDevice({ canTrim: false });
  const g = guard(dev);
  assert.equal(g.info().canTrim, false);
  await g.trim(0, 4096, false);
  assert.deepEqual(dev.calls, []);
});

Deno.test("guard: extents and cache are emulated, and device extents are clipped", async () => {
  const bare = new RecordingDevice({ canExtents: false, canCache: false });
  const g = guard(bare);
  assert.deepEqual(await g.extents(4096, 8192), [{ length: 8192, hole: false, zero: false }]);
  await g.cache(0, 4096);
  assert.deepEqual(bare.calls, []);
  const dev = new RecordingDevice({});
  dev.extentsAnswer = [
    { length: 4096, hole: false, zero: false },
    { length: 65536, hole: true, zero: true },
    { length: 4096, hole: false, zero: false },
  ];
  assert.deepEqual(await guard(dev).extents(0, 8192), [
    { length: 4096, hole: false, zero: false },
    { length: 4096, hole: true, zero: true },
  ]);
  dev.extentsAnswer = [];
  await rejects(guard(dev).extents(0, 8192), "EIO");
  await rejects(g.extents(0, 0), "EINVAL");
});

Deno.test("guard: range, size and alignment errors, before the device sees anything", async () => {
  const dev = new RecordingDevice({ size: MiB, minBlock: 512, maxBlock: 64 * 1024 });
  const g = guard(dev);
  await rejects(g.read(MiB - 512, 1024), "EINVAL");
  await rejects(g.write(MiB - 512, new Uint8Array(1024), false), "ENOSPC");
  await rejects(g.zero(MiB, 512, noZero), "ENOSPC");
  await rejects(g.trim(MiB, 512, false), "EINVAL");
  await rejects(g.read(-512, 512), "EINVAL");
  await rejects(g.read(0.5, 512), "EINVAL");
  await rejects(g.read(2 ** 53, 512), "EINVAL");
  await rejects(g.read(Number.MAX_SAFE_INTEGER - 511, 512), "EINVAL");
  await rejects(g.read(100, 512), "EINVAL"); // misaligned
  await rejects(g.write(0, new Uint8Array(100), false), "EINVAL");
  await rejects(g.read(0, 128 * 1024), "EOVERFLOW");
  await rejects(g.write(0, new Uint8Array(128 * 1024), false), "EOVERFLOW");
  await rejects(g.read(0, 1024, new Uint8Array(512)), "EINVAL");
  assert.deepEqual(dev.calls, []);
  // Large zeroes and trims carry no payload, so the request limit does not apply to them.
  await g.zero(0, 256 * 1024, noZero);
  assert.deepEqual(dev.calls, ["zero 0+262144"]);
});

Deno.test("guard: read-only, fast zero and closed", async () => {
  const ro = guard(new MemoryBlockDevice({ size: MiB, readOnly: true }));
  assert.equal(ro.info().canZero, false);
  await rejects(ro.write(0, new Uint8Array(1), false), "EPERM");
  await rejects(ro.zero(0, 1, noZero), "EPERM");
  await rejects(ro.trim(0, 1, false), "EPERM");
  await ro.read(0, 1);
  await ro.flush();
  const dev = new RecordingDevice({ canFastZero: false });
  const g = guard(dev);
  await rejects(g.zero(0, 512, { ...noZero, fastZero: true }), "ENOTSUP");
  assert.deepEqual(dev.calls, []);
  await g.close();
  await g.close();
  assert.deepEqual(dev.calls, ["close"]);
  await rejects(g.read(0, 1), "ESHUTDOWN");
  await rejects(g.flush(), "ESHUTDOWN");
  assert.equal(guard(g), g, "guarding twice gives the same guard");
});
