/**
 * The file device beyond the conformance suite: its metadata on real files (refusing blank or
 * foreign media), honest hole punching and extents, read-only mode, and close waiting for
 * requests in flight.
 */
import assert from "node:assert/strict";
import { BlockError } from "./contract.ts";
import { FileBlockDevice } from "./file.ts";
import { MediaError } from "./media.ts";
import { checkBlock, fillBlock } from "../../drill/block_stamps.ts";

const MiB = 1024 * 1024;

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-file-" });
  try {
    await run(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function stamped(offset: number, length: number, writer: number, seq: number): Uint8Array {
  const buf = new Uint8Array(length);
  fillBlock(buf, offset, writer, seq);
  return buf;
}

Deno.test("file: blank, foreign and too-small media are refused with a clear error", async () => {
  await withDir(async (dir) => {
    const blank = `${dir}/blank.img`;
    await Deno.writeFile(blank, new Uint8Array(4 * MiB));
    await assert.rejects(
      FileBlockDevice.open({ path: blank }),
      (e) => e instanceof MediaError && e.code === "unformatted",
    );
    const path = `${dir}/node.img`;
    const device = await FileBlockDevice.create({ path, size: 4 * MiB, leg: 2 });
    const id = device.meta.storageId;
    await device.close();
    assert.equal((await Deno.stat(path)).size, MiB + 4 * MiB, "1 MiB of metadata, then data");
    await assert.rejects(
      FileBlockDevice.open({ path, expectStorageId: "ab".repeat(16) }),
      (e) => e instanceof MediaError && e.code === "storage" && e.message.includes(id),
    );
    await assert.rejects(
      FileBlockDevice.open({ path, expectSize: 8 * MiB }),
      (e) => e instanceof MediaError && e.code === "size",
    );
    await Deno.truncate(path, 3 * MiB);
    await assert.rejects(
      FileBlockDevice.open({ path }),
      (e) => e instanceof MediaError && e.code === "size",
    );
    await assert.rejects(
      FileBlockDevice.open({ path: `${dir}/missing.img` }),
      (e) => (e as { code?: string }).code === "ENOENT",
    );
  });
});

Deno.test("file: metadata and bitmap updates persist; create refuses to overwrite unless told", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/node.img`;
    let device = await FileBlockDevice.create({ path, size: 8 * MiB, chunkSize: 4096 });
    const first = device.meta;
    await device.write(0, stamped(0, 4096, 1, 1), true);
    await Promise.all([
      device.updateMeta({ leg: 4 }),
      device.updateMeta({ flags: 9 }),
    ]);
    const bitmap = await device.readBitmap();
    bitmap[7] = 0x81;
    await device.writeBitmap(bitmap, 7, 8);
    await device.close();

    device = await FileBlockDevice.open({ path, expectStorageId: first.storageId, expectLeg: 4 });
    assert.equal(device.meta.flags, 9);
    // Three updates: the first write's (the media stops being blank), then the two above.
    assert.equal(device.meta.sequence, 3);
    assert.equal((await device.readBitmap())[7], 0x81);
    assert.deepEqual(checkBlock(await device.read(0, 4096), 0), { writer: 1, seq: 1 });
    await device.close();

    await assert.rejects(
      FileBlockDevice.create({ path, size: 8 * MiB }),
      (e) => e instanceof MediaError && e.code === "exists" && e.message.includes(first.storageId),
    );
    device = await FileBlockDevice.create({ path, size: 8 * MiB, overwrite: true });
    assert.notEqual(device.meta.storageId, first.storageId);
    assert.ok((await device.read(0, 4096)).every((b) => b === 0), "old data is gone");
    await device.close();
  });
});

Deno.test("file: trim punches holes that extents report; the file stays sparse", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/node.img`;
    const device = await FileBlockDevice.create({ path, size: 64 * MiB });
    try {
      const info = device.info();
      // ext4/xfs/tmpfs punch holes; if this filesystem cannot, the device must say so.
      assert.equal(info.canExtents, true);
      const empty = await device.extents(0, 64 * MiB);
      assert.deepEqual(empty, [{ length: 64 * MiB, hole: true, zero: true }]);
      await device.write(MiB, stamped(MiB, MiB, 1, 1), false);
      assert.deepEqual(await device.extents(0, 4 * MiB), [
        { length: MiB, hole: true, zero: true },
        { length: MiB, hole: false, zero: false },
        { length: 2 * MiB, hole: true, zero: true },
      ]);
      if (!info.canTrim) return;
      await device.trim(MiB + 256 * 1024, 256 * 1024, false);
      assert.deepEqual(await device.extents(MiB, MiB), [
        { length: 256 * 1024, hole: false, zero: false },
        { length: 256 * 1024, hole: true, zero: true },
        { length: 512 * 1024, hole: false, zero: false },
      ]);
      assert.ok((await device.read(MiB + 256 * 1024, 256 * 1024)).every((b) => b === 0));
      const blocks = (await Deno.stat(path)).blocks ?? 0;
      assert.ok(blocks * 512 < 2 * MiB, `a 65 MiB file holding 0.75 MiB uses ${blocks} blocks`);
      await device.zero(MiB, 4096, { fua: true, fastZero: true, mayTrim: false });
      assert.ok((await device.read(MiB, 4096)).every((b) => b === 0));
    } finally {
      await device.close();
    }
  });
});

Deno.test("file: read-only media refuses writes and metadata updates with EPERM", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/node.img`;
    await (await FileBlockDevice.create({ path, size: 4 * MiB })).close();
    const device = await FileBlockDevice.open({ path, readOnly: true });
    try {
      assert.equal(device.info().readOnly, true);
      assert.equal(device.info().canTrim, false);
      const eperm = (e: unknown) => e instanceof BlockError && e.code === "EPERM";
      await assert.rejects(device.write(0, new Uint8Array(512), false), eperm);
      await assert.rejects(device.updateMeta({ leg: 1 }), eperm);
      await assert.rejects(device.writeBitmap(new Uint8Array(4096)), eperm);
      await device.read(0, 512);
      await device.flush();
    } finally {
      await device.close();
    }
  });
});

Deno.test("file: close waits for every request in flight, in both I/O modes", async () => {
  for (const io of ["sync", "threaded"] as const) {
    await withDir(async (dir) => {
      const path = `${dir}/node.img`;
      const device = await FileBlockDevice.create({ path, size: 8 * MiB, io });
      const writes = Array.from(
        { length: 64 },
        (_, i) => device.write(i * 65536, stamped(i * 65536, 65536, 2, i), i % 8 === 0),
      );
      await device.close();
      await Promise.all(writes);
      const again = await FileBlockDevice.open({ path, io });
      try {
        for (let i = 0; i < 64; i++) {
          const got = checkBlock(await again.read(i * 65536, 65536), i * 65536);
          assert.deepEqual(got, { writer: 2, seq: i }, `${io} block ${i}`);
        }
      } finally {
        await again.close();
      }
    });
  }
});

Deno.test({
  name: "file: a raw block device (loop device) is sized, zeroed and reopened",
  ignore: Deno.uid() !== 0,
  async fn() {
    await withDir(async (dir) => {
      const backing = `${dir}/backing.img`;
      await Deno.writeFile(backing, new Uint8Array(0));
      await Deno.truncate(backing, 40 * MiB);
      const attach = await new Deno.Command("losetup", {
        args: ["-f", "--show", backing],
        stdout: "piped",
        stderr: "piped",
      }).output().catch(() => null);
      if (!attach?.success) {
        console.log("skipped: this machine has no loop devices");
        return;
      }
      const loop = new TextDecoder().decode(attach.stdout).trim();
      try {
        await assert.rejects(
          FileBlockDevice.create({ path: loop, size: 40 * MiB }),
          (e) => e instanceof MediaError && e.code === "size",
        );
        const device = await FileBlockDevice.create({
          path: loop,
          size: 32 * MiB,
          overwrite: true,
        });
        const id = device.meta.storageId;
        await device.write(MiB, stamped(MiB, 64 * 1024, 3, 1), true);
        // Misaligned edges are written, the aligned middle goes to the device's zeroing.
        await device.zero(MiB + 100, 9000, { fua: true, fastZero: false, mayTrim: false });
        const back = await device.read(MiB, 64 * 1024);
        assert.ok(back.subarray(100, 9100).every((b) => b === 0));
        assert.notEqual(back[99], 0);
        assert.deepEqual(checkBlock(back.subarray(12288), MiB + 12288), { writer: 3, seq: 1 });
        if (device.info().canFastZero) {
          await device.zero(MiB + 16384, 4096, { fua: false, fastZero: true, mayTrim: false });
          assert.ok((await device.read(MiB + 16384, 4096)).every((b) => b === 0));
        }
        await device.close();
        const again = await FileBlockDevice.open({ path: loop, expectStorageId: id });
        assert.equal(again.info().size, 32 * MiB);
        assert.deepEqual(
          checkBlock(await again.read(MiB + 32768, 4096), MiB + 32768),
          { writer: 3, seq: 1 },
        );
        await again.close();
      } finally {
        await new Deno.Command("losetup", { args: ["-d", loop] }).output();
      }
    });
  },
});
