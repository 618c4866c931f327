/**
 * The block conformance suite: one list of cases every block actor must pass — memory, file,
 * guard-wrapped, and later remote proxies and mappings. Call {@link runBlockConformance} with a
 * name and a factory that makes a fresh device; each case gets its own device. Data is
 * self-describing (drill/block_stamps.ts), so a misrouted, stale or mixed read names itself.
 */
import assert from "node:assert/strict";
import {
  type BlockDevice,
  BlockError,
  type BlockErrorCode,
  type Extent,
} from "../../actors/block/contract.ts";
import { checkBlock, fillBlock, isZero } from "../../drill/block_stamps.ts";

/** A device made for one case, with what the case may need beyond the device itself. */
export interface DeviceUnderTest {
  readonly device: BlockDevice;
  /** Closes `device` and opens the same storage again (for the persistence case). */
  readonly reopen?: () => Promise<BlockDevice>;
  /** Releases what the device left behind (temp files); runs after every case. */
  readonly dispose?: () => Promise<void>;
}

export interface FactoryOptions {
  /** Make the device read-only; return null if this kind of device cannot be. */
  readonly readOnly: boolean;
}

export type BlockFactory = (
  options: FactoryOptions,
) => Promise<BlockDevice | DeviceUnderTest | null>;

export interface ConformanceCase {
  readonly name: string;
  /** Runs the case on a fresh device; `readOnly` cases get a read-only one. */
  readonly readOnly?: boolean;
  run(device: BlockDevice, under: DeviceUnderTest): Promise<void>;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;

/** Registers one Deno test per case, named "<name>: <case>". */
export function runBlockConformance(name: string, factory: BlockFactory): void {
  for (const c of blockConformanceCases) {
    Deno.test(`${name}: ${c.name}`, async () => {
      const made = await factory({ readOnly: c.readOnly ?? false });
      if (made === null) return; // this kind of device has no read-only mode
      const under: DeviceUnderTest = "device" in made ? made : { device: made };
      try {
        await c.run(under.device, under);
      } finally {
        await under.device.close().catch(() => {});
        await under.dispose?.();
      }
    });
  }
}

/** Writes a stamped buffer of `length` bytes at `offset` as `writer`/`seq`. */
async function writeStamped(
  device: BlockDevice,
  offset: number,
  length: number,
  writer: number,
  seq: number,
  fua = false,
): Promise<void> {
  const buf = new Uint8Array(length);
  fillBlock(buf, offset, writer, seq);
  const piece = device.info().maxBlock;
  for (let at = 0; at < length; at += piece) {
    await device.write(offset + at, buf.subarray(at, Math.min(length, at + piece)), fua);
  }
}

/** Reads `length` bytes at `offset` and insists they are writer/seq's stamps. */
async function expectStamped(
  device: BlockDevice,
  offset: number,
  length: number,
  writer: number,
  seq: number,
): Promise<void> {
  const buf = new Uint8Array(length);
  const piece = device.info().maxBlock;
  for (let at = 0; at < length; at += piece) {
    await device.read(offset + at, Math.min(piece, length - at), buf.subarray(at));
  }
  const got = checkBlock(buf, offset);
  if (got instanceof Error) assert.fail(`read ${offset}+${length}: ${got.message}`);
  assert.deepEqual(got, { writer, seq }, `read ${offset}+${length}`);
}

async function expectZeros(device: BlockDevice, offset: number, length: number): Promise<void> {
  const piece = device.info().maxBlock;
  for (let at = offset; at < offset + length; at += piece) {
    const buf = await device.read(at, Math.min(piece, offset + length - at));
    assert.ok(isZero(buf), `${offset}+${length} should read as zeros (not at ${at})`);
  }
}

async function rejectsWith(
  promise: Promise<unknown>,
  codes: readonly BlockErrorCode[],
  what: string,
): Promise<void> {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof BlockError, `${what}: expected a BlockError, got ${e}`);
    assert.ok(codes.includes(e.code), `${what}: expected ${codes.join("|")}, got ${e.code}`);
    return true;
  });
}

/** Checks extents cover the range's start, stay within it, and that "zero" is true. */
async function checkExtents(
  device: BlockDevice,
  offset: number,
  length: number,
): Promise<Extent[]> {
  const extents = await device.extents(offset, length);
  assert.ok(extents.length > 0, "extents must cover at least the first byte");
  let at = offset;
  for (const e of extents) {
    assert.ok(e.length > 0, "extents are never empty");
    assert.ok(at + e.length <= offset + length, "extents stay within the asked range");
    if (e.zero) {
      for (let p = at; p < at + e.length; p += MiB) {
        await expectZeros(device, p, Math.min(MiB, at + e.length - p));
      }
    }
    at += e.length;
  }
  return extents;
}

/** Offsets where extents say data may be non-zero. */
function zeroAt(extents: Extent[], offset: number, position: number): boolean {
  let at = offset;
  for (const e of extents) {
    if (position >= at && position < at + e.length) return e.zero;
    at += e.length;
  }
  return false;
}

function sizeOf(device: BlockDevice, atLeast: number): number {
  const size = device.info().size;
  assert.ok(size >= atLeast, `the conformance suite needs a device of at least ${atLeast} bytes`);
  return size;
}

export const blockConformanceCases: readonly ConformanceCase[] = [
  {
    name: "info is consistent",
    run(device) {
      const info = device.info();
      assert.ok(Number.isSafeInteger(info.size) && info.size >= 4 * MiB);
      assert.ok(info.minBlock >= 1 && info.minBlock <= info.preferredBlock);
      assert.ok(info.preferredBlock <= info.maxBlock);
      assert.equal(info.readOnly, false);
      return Promise.resolve();
    },
  },
  {
    name: "read after write at many offsets and sizes",
    async run(device) {
      const size = sizeOf(device, 4 * MiB);
      const max = Math.min(device.info().maxBlock, MiB);
      const sizes = [512, BLOCK, 3 * BLOCK, 64 * KiB, max];
      const offsets = [0, 512, BLOCK, 5 * BLOCK + 512, MiB - 512, 2 * MiB + BLOCK];
      let seq = 0;
      for (const length of sizes) {
        for (const offset of [...offsets, size - length]) {
          seq++;
          await writeStamped(device, offset, length, 1, seq);
          await expectStamped(device, offset, length, 1, seq);
        }
      }
      // A read into a larger pooled buffer lands at its start and returns a view of it.
      await writeStamped(device, 3 * MiB, BLOCK, 2, 1);
      const pool = new Uint8Array(2 * BLOCK).fill(0xee);
      const view = await device.read(3 * MiB, BLOCK, pool);
      assert.equal(view.length, BLOCK);
      assert.equal(view.buffer, pool.buffer);
      assert.deepEqual(checkBlock(pool.subarray(0, BLOCK), 3 * MiB), { writer: 2, seq: 1 });
      assert.equal(pool[BLOCK], 0xee, "nothing past the asked length is touched");
    },
  },
  {
    name: "fresh device reads as zeros into a dirty buffer",
    async run(device) {
      const pool = new Uint8Array(BLOCK).fill(0xee);
      await device.read(MiB + BLOCK, BLOCK, pool);
      assert.ok(isZero(pool), "never-written space of a fresh device reads as zeros");
    },
  },
  {
    name: "byte-granular writes when minBlock is 1",
    async run(device) {
      if (device.info().minBlock !== 1) return;
      const bytes = Uint8Array.from([1, 2, 3, 4, 5, 6, 7]);
      await device.write(1001, bytes, false);
      await device.write(1003, Uint8Array.from([9]), false);
      const got = await device.read(1000, 9);
      assert.deepEqual([...got], [0, 1, 2, 9, 4, 5, 6, 7, 0]);
    },
  },
  {
    name: "writes crossing chunk boundaries",
    async run(device) {
      sizeOf(device, 4 * MiB);
      // Straddle 64 KiB, 1 MiB and 2 MiB boundaries, then read back whole and in pieces.
      const spans = [[64 * KiB - 2 * KiB, 8 * KiB], [MiB - 60 * KiB, 128 * KiB], [
        2 * MiB - 512,
        BLOCK,
      ]] as const;
      let seq = 0;
      for (const [offset, length] of spans) {
        await writeStamped(device, offset, length, 3, ++seq);
        await expectStamped(device, offset, length, 3, seq);
        for (let at = offset; at < offset + length; at += 1536) {
          const n = Math.min(1536, offset + length - at);
          await expectStamped(device, at, n, 3, seq);
        }
      }
    },
  },
  {
    name: "FUA writes and flush",
    async run(device) {
      const info = device.info();
      if (info.canFua) {
        await writeStamped(device, 0, BLOCK, 4, 1, true);
        await expectStamped(device, 0, BLOCK, 4, 1);
      }
      await writeStamped(device, BLOCK, BLOCK, 4, 2);
      if (info.canFlush) await device.flush();
      await expectStamped(device, BLOCK, BLOCK, 4, 2);
      // Many FUA writes at once all complete (syncs may be shared, never lost).
      if (info.canFua) {
        await Promise.all(
          Array.from(
            { length: 32 },
            (_, i) => writeStamped(device, MiB + i * BLOCK, BLOCK, 5, i, true),
          ),
        );
        for (let i = 0; i < 32; i++) await expectStamped(device, MiB + i * BLOCK, BLOCK, 5, i);
      }
    },
  },
  {
    name: "trim leaves data outside the range alone",
    async run(device) {
      await writeStamped(device, 0, 3 * 64 * KiB, 6, 1);
      if (!device.info().canTrim) {
        // Not advertised: a caller that trims anyway must not get garbage outside the range.
        await device.trim(64 * KiB, 64 * KiB, false).catch(() => {});
      } else {
        await device.trim(64 * KiB, 64 * KiB, false);
        await device.trim(2 * 64 * KiB + BLOCK, BLOCK, device.info().canFua);
      }
      await expectStamped(device, 0, 64 * KiB, 6, 1);
      await expectStamped(device, 2 * 64 * KiB, BLOCK, 6, 1);
      await expectStamped(device, 2 * 64 * KiB + 2 * BLOCK, 64 * KiB - 2 * BLOCK, 6, 1);
      // Trimmed space reads without error (its content is unspecified).
      await device.read(64 * KiB, 64 * KiB);
    },
  },
  {
    name: "zero reads back zeros and leaves the rest",
    async run(device) {
      if (!device.info().canZero) return;
      await writeStamped(device, 0, MiB, 7, 1);
      const fua = device.info().canFua;
      await device.zero(64 * KiB, 64 * KiB, { fua: false, fastZero: false, mayTrim: false });
      await device.zero(256 * KiB + 512, 3 * BLOCK, { fua, fastZero: false, mayTrim: true });
      await device.zero(512 * KiB + 3, 10, { fua: false, fastZero: false, mayTrim: true });
      await expectZeros(device, 64 * KiB, 64 * KiB);
      await expectZeros(device, 256 * KiB + 512, 3 * BLOCK);
      await expectZeros(device, 512 * KiB + 3, 10);
      await expectStamped(device, 0, 64 * KiB, 7, 1);
      await expectStamped(device, 128 * KiB, 128 * KiB, 7, 1);
      await expectStamped(device, 256 * KiB, 512, 7, 1);
      await expectStamped(device, 256 * KiB + 512 + 3 * BLOCK, BLOCK - 512, 7, 1);
      const edge = await device.read(512 * KiB, 16);
      assert.ok(isZero(edge.subarray(3, 13)) && !isZero(edge.subarray(0, 3)));
      // Zeroing a large range (beyond one request's worth) works too.
      await device.zero(MiB, 3 * MiB, { fua: false, fastZero: false, mayTrim: false });
      await expectZeros(device, MiB, 3 * MiB);
    },
  },
  {
    name: "fast zero either zeros or fails with ENOTSUP, never slowly",
    async run(device) {
      if (!device.info().canZero) return;
      await writeStamped(device, 0, 128 * KiB, 8, 1);
      const zero = device.zero(0, 64 * KiB, { fua: false, fastZero: true, mayTrim: true });
      if (device.info().canFastZero) {
        await zero;
        await expectZeros(device, 0, 64 * KiB);
      } else {
        await rejectsWith(zero, ["ENOTSUP"], "fast zero on a device without it");
        await expectStamped(device, 0, 64 * KiB, 8, 1);
      }
      await expectStamped(device, 64 * KiB, 64 * KiB, 8, 1);
    },
  },
  {
    name: "extents after writes, trims and zeros",
    async run(device) {
      if (!device.info().canExtents) return;
      const size = sizeOf(device, 4 * MiB);
      await checkExtents(device, 0, size);
      await writeStamped(device, 0, 256 * KiB, 9, 1);
      await writeStamped(device, MiB, 64 * KiB, 9, 2);
      if (device.info().canTrim) await device.trim(64 * KiB, 64 * KiB, false);
      if (device.info().canZero) {
        await device.zero(128 * KiB, 64 * KiB, { fua: false, fastZero: false, mayTrim: true });
      }
      const extents = await checkExtents(device, 0, 2 * MiB);
      // Written data is never reported as zeros.
      assert.ok(!zeroAt(extents, 0, 0), "written data reported as zero");
      assert.ok(!zeroAt(extents, 0, 192 * KiB), "written data reported as zero");
      assert.ok(!zeroAt(extents, 0, MiB + BLOCK), "written data reported as zero");
      // Asking from an unaligned offset inside data still starts at that offset.
      await checkExtents(device, MiB + 100, 100);
    },
  },
  {
    name: "out-of-range requests fail and change nothing",
    async run(device) {
      const size = device.info().size;
      await writeStamped(device, size - BLOCK, BLOCK, 10, 1);
      const block = new Uint8Array(2 * BLOCK);
      await rejectsWith(device.read(size - BLOCK, 2 * BLOCK), ["EINVAL"], "read past the end");
      await rejectsWith(device.read(size, 1), ["EINVAL"], "read at the end");
      await rejectsWith(device.read(-BLOCK, BLOCK), ["EINVAL"], "negative offset");
      await rejectsWith(
        device.write(size - BLOCK, block, false),
        ["EINVAL", "ENOSPC"],
        "write past the end",
      );
      await rejectsWith(
        device.zero(size - BLOCK, 2 * BLOCK, { fua: false, fastZero: false, mayTrim: false }),
        ["EINVAL", "ENOSPC"],
        "zero past the end",
      );
      await rejectsWith(device.trim(size, BLOCK, false), ["EINVAL", "ENOSPC"], "trim past end");
      await rejectsWith(
        device.read(Number.MAX_SAFE_INTEGER - 10, 100),
        ["EINVAL"],
        "offset + length overflowing",
      );
      await expectStamped(device, size - BLOCK, BLOCK, 10, 1);
    },
  },
  {
    name: "read-only device refuses changes with EPERM",
    readOnly: true,
    async run(device) {
      assert.equal(device.info().readOnly, true);
      await device.read(0, BLOCK);
      const block = new Uint8Array(BLOCK);
      await rejectsWith(device.write(0, block, false), ["EPERM"], "write");
      await rejectsWith(device.trim(0, BLOCK, false), ["EPERM"], "trim");
      await rejectsWith(
        device.zero(0, BLOCK, { fua: false, fastZero: false, mayTrim: false }),
        ["EPERM"],
        "zero",
      );
    },
  },
  {
    name: "256 concurrent writes to distinct blocks all read back",
    async run(device) {
      sizeOf(device, 256 * 8 * KiB);
      const writes = [];
      for (let i = 0; i < 256; i++) {
        // Spread and interleave: block i lands at a shuffled place, sizes of 4 or 8 KiB.
        const slot = (i * 97) % 256;
        writes.push(writeStamped(device, slot * 8 * KiB, (i % 2 + 1) * BLOCK, 11, i));
      }
      await Promise.all(writes);
      await Promise.all(
        Array.from(
          { length: 256 },
          (_, i) => expectStamped(device, ((i * 97) % 256) * 8 * KiB, (i % 2 + 1) * BLOCK, 11, i),
        ),
      );
    },
  },
  {
    name: "overlapping concurrent writes resolve to one writer per block",
    async run(device) {
      const length = 64 * KiB;
      const writers = 8;
      for (let round = 0; round < 4; round++) {
        const offset = round * 256 * KiB + (round % 2) * 512;
        await Promise.all(
          Array.from({ length: writers }, (_, w) => writeStamped(device, offset, length, w, round)),
        );
        for (let at = offset; at < offset + length; at += BLOCK) {
          const got = checkBlock(await device.read(at, BLOCK), at);
          if (got instanceof Error) assert.fail(`round ${round}: ${got.message}`);
          assert.equal(got.seq, round);
          assert.ok(got.writer < writers);
        }
      }
    },
  },
  {
    name: "requests after close fail with ESHUTDOWN",
    async run(device) {
      await device.close();
      await rejectsWith(device.read(0, BLOCK), ["ESHUTDOWN"], "read after close");
      await rejectsWith(device.write(0, new Uint8Array(BLOCK), false), ["ESHUTDOWN"], "write");
    },
  },
  {
    name: "reopen after close keeps data",
    async run(device, under) {
      if (!under.reopen) return;
      await writeStamped(device, 0, BLOCK, 12, 1);
      await writeStamped(device, 2 * MiB + 512, 64 * KiB, 12, 2, device.info().canFua);
      await device.zero(MiB, 64 * KiB, { fua: false, fastZero: false, mayTrim: true });
      if (device.info().canFlush) await device.flush();
      const again = await under.reopen();
      try {
        await expectStamped(again, 0, BLOCK, 12, 1);
        await expectStamped(again, 2 * MiB + 512, 64 * KiB, 12, 2);
        await expectZeros(again, MiB, 64 * KiB);
      } finally {
        await again.close();
      }
    },
  },
];
