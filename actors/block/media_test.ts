/**
 * Media metadata: round trips, the layout's sizes, and every way bad media is refused — never
 * silently used — including a torn header update that must fall back to the previous copy.
 */
import assert from "node:assert/strict";
import {
  BITMAP_OFFSET,
  formatMedia,
  HISTORY_SLOTS,
  layoutFor,
  MEDIA_PAGE,
  MediaError,
  type MediaErrorCode,
  type MediaIo,
  NO_GENERATION,
  openMedia,
  readBitmap,
  updateMedia,
  writeBitmap,
} from "./media.ts";
import { SeededRandom } from "../../util/random.ts";

const MiB = 1024 * 1024;

/** Media in memory that counts syncs and can tear the next write after `tearAfter` bytes. */
class MemoryMedia implements MediaIo {
  bytes: Uint8Array;
  syncs = 0;
  writes: [number, number][] = [];
  tearAfter: number | undefined;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }
  pread(buf: Uint8Array, position: number): Promise<void> {
    buf.fill(0);
    buf.set(this.bytes.subarray(position, position + buf.length));
    return Promise.resolve();
  }
  pwrite(buf: Uint8Array, position: number): Promise<void> {
    if (this.tearAfter !== undefined) {
      this.bytes.set(buf.subarray(0, this.tearAfter), position);
      this.tearAfter = undefined;
      return Promise.reject(new Error("power lost mid-write"));
    }
    this.writes.push([position, buf.length]);
    this.bytes.set(buf, position);
    return Promise.resolve();
  }
  sync(): Promise<void> {
    this.syncs++;
    return Promise.resolve();
  }
  size(): number {
    return this.bytes.length;
  }
}

async function refused(p: Promise<unknown>, code: MediaErrorCode, text: RegExp): Promise<void> {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof MediaError, `expected a MediaError, got ${e}`);
    assert.equal(e.code, code);
    assert.match(e.message, text);
    return true;
  });
}

Deno.test("media: layout reserves at least 1 MiB and sizes the bitmap for the chunks", () => {
  const small = layoutFor(16 * MiB, 64 * 1024);
  assert.deepEqual(small, {
    dataOffset: MiB,
    bitmapOffset: BITMAP_OFFSET,
    bitmapBytes: MEDIA_PAGE,
    chunks: 256,
  });
  // 8 TiB in 64 KiB chunks: 2^27 bits = 16 MiB of bitmap, so the data starts past it.
  const big = layoutFor(8 * 2 ** 40, 64 * 1024);
  assert.equal(big.bitmapBytes, 16 * MiB);
  assert.equal(big.dataOffset, 17 * MiB);
  assert.throws(() => layoutFor(MiB, 3000), RangeError);
  assert.throws(() => layoutFor(-1, 65536), RangeError);
});

Deno.test("media: format then open round-trips every field", async () => {
  const io = new MemoryMedia(2 * MiB);
  io.bytes.fill(0x5a); // old junk everywhere
  const meta = await formatMedia(io, {
    dataSize: MiB,
    chunkSize: 4096,
    leg: 3,
    flags: 5,
    random: new SeededRandom(7),
  });
  assert.equal(meta.storageId.length, 32);
  assert.notEqual(meta.generations.current, NO_GENERATION);
  assert.equal(meta.generations.bitmap, NO_GENERATION);
  assert.ok(io.syncs >= 2, "format syncs before and after the header");
  assert.deepEqual(await openMedia(io), meta);
  assert.ok((await readBitmap(io, meta)).every((b) => b === 0), "format clears the bitmap");
  const again = await formatMedia(io, { dataSize: MiB, random: new SeededRandom(7) });
  assert.equal(again.storageId, meta.storageId, "the seeded random source decides ids");
  const fresh = await formatMedia(io, { dataSize: MiB });
  assert.notEqual(fresh.storageId, meta.storageId);
});

Deno.test("media: updates alternate between the two copies and survive reopen", async () => {
  const io = new MemoryMedia(2 * MiB);
  let meta = await formatMedia(io, { dataSize: MiB });
  const slots: number[] = [];
  for (let i = 1; i <= 3; i++) {
    io.writes = [];
    const syncs = io.syncs;
    meta = await updateMedia(io, meta, {
      generations: {
        current: `${i}`.repeat(16),
        bitmap: "ab".repeat(8),
        history: ["cd".repeat(8)],
      },
    });
    slots.push(io.writes[0]![0]);
    assert.equal(io.syncs, syncs + 1, "each update is synced");
  }
  assert.deepEqual(slots, [MEDIA_PAGE, 0, MEDIA_PAGE]);
  const opened = await openMedia(io);
  assert.equal(opened.sequence, 3);
  assert.deepEqual(opened.generations, {
    current: "3333333333333333",
    bitmap: "abababababababab",
    history: ["cdcdcdcdcdcdcdcd"],
  });
  await assert.rejects(
    updateMedia(io, meta, { generations: { current: "xyz", bitmap: NO_GENERATION, history: [] } }),
    RangeError,
  );
});

Deno.test("media: a long generation history survives reopen; its first four stay where older media kept them", async () => {
  const io = new MemoryMedia(2 * MiB);
  const meta = await formatMedia(io, { dataSize: MiB });
  const history = Array.from({ length: HISTORY_SLOTS }, (_, i) => i.toString(16).padStart(16, "0"));
  await updateMedia(io, meta, {
    generations: { current: "ef".repeat(8), bitmap: history[9]!, history },
  });
  const opened = await openMedia(io);
  assert.deepEqual(opened.generations.history, history);
  // Media written by a dst that kept four: the count and the first field are all it read.
  const header = io.bytes.subarray(opened.sequence % 2 === 0 ? 0 : MEDIA_PAGE);
  assert.equal(new DataView(header.buffer, header.byteOffset).getUint32(100, true), HISTORY_SLOTS);
  assert.deepEqual(header.subarray(104, 112), new Uint8Array(8)); // history[0] is all zeros
  assert.deepEqual(header.subarray(112, 120), Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 1));
  await assert.rejects(
    updateMedia(io, opened, {
      generations: { current: "ef".repeat(8), bitmap: NO_GENERATION, history: [...history, "ab"] },
    }),
    RangeError,
  );
});

Deno.test("media: a torn header update falls back to the previous copy", async () => {
  const io = new MemoryMedia(2 * MiB);
  const first = await formatMedia(io, { dataSize: MiB });
  const second = await updateMedia(io, first, { leg: 1 });
  io.tearAfter = 100; // the third update dies after 100 bytes of its copy
  await assert.rejects(updateMedia(io, second, { leg: 2 }), /power lost/);
  const opened = await openMedia(io);
  assert.equal(opened.leg, 1);
  assert.equal(opened.sequence, 1);
  // The next update reuses the torn copy; damage to it alone is also survived.
  assert.equal((await updateMedia(io, opened, { leg: 2 })).sequence, 2);
  assert.equal((await openMedia(io)).leg, 2);
  io.bytes[50]! ^= 0xff;
  assert.equal((await openMedia(io)).leg, 1);
  // Damage to both: refused, not guessed.
  io.bytes[MEDIA_PAGE + 50]! ^= 0xff;
  await refused(openMedia(io), "corrupt", /checksum/);
});

Deno.test("media: unformatted, foreign version, truncated and foreign media are refused", async () => {
  const blank = new MemoryMedia(2 * MiB);
  await refused(openMedia(blank), "unformatted", /no dst metadata/);
  blank.bytes.fill(0x77);
  await refused(openMedia(blank), "unformatted", /create/);

  const io = new MemoryMedia(3 * MiB);
  const meta = await formatMedia(io, { dataSize: 2 * MiB, leg: 1 });
  const future = new MemoryMedia(3 * MiB);
  future.bytes.set(io.bytes);
  new DataView(future.bytes.buffer).setUint32(8, 99, true);
  await refused(openMedia(future), "version", /version 99/);

  const truncated = new MemoryMedia(2 * MiB);
  truncated.bytes.set(io.bytes.subarray(0, 2 * MiB));
  await refused(openMedia(truncated), "size", /truncated/);

  await refused(openMedia(io, { dataSize: MiB }), "size", /expected 1048576/);
  await refused(openMedia(io, { storageId: "00".repeat(16) }), "storage", /belongs to storage/);
  await refused(openMedia(io, { leg: 0 }), "leg", /leg 1/);
  assert.deepEqual(await openMedia(io, { storageId: meta.storageId, leg: 1 }), meta);
  await refused(formatMedia(new MemoryMedia(MiB), { dataSize: MiB }), "size", /need/);
});

Deno.test("media: bitmap pages are written and synced, and read back", async () => {
  const io = new MemoryMedia(80 * MiB);
  const meta = await formatMedia(io, { dataSize: 64 * MiB, chunkSize: 4096 });
  assert.equal(meta.chunks, 16384);
  assert.equal(meta.bitmapBytes, 2048 > MEDIA_PAGE ? 2048 : MEDIA_PAGE);
  const bitmap = await readBitmap(io, meta);
  bitmap[10] = 0b1010;
  io.writes = [];
  const syncs = io.syncs;
  await writeBitmap(io, meta, bitmap, 10, 11);
  assert.deepEqual(io.writes, [[BITMAP_OFFSET, MEDIA_PAGE]]);
  assert.equal(io.syncs, syncs + 1);
  assert.equal((await readBitmap(io, meta))[10], 0b1010);
  await assert.rejects(writeBitmap(io, meta, new Uint8Array(3)), RangeError);
});
