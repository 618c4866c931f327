/** Unit tests of the frame codec and the incremental, view-handing reader. */

import assert from "node:assert/strict";
import { SeededRandom } from "../util/random.ts";
import {
  encodeFrame,
  FrameError,
  FrameReader,
  MAX_HEADER_BYTES,
  PREFIX_BYTES,
  writePrefix,
} from "./frame.ts";
import type { Frame } from "./types.ts";

/** Feeds `bytes` in pieces of random size (1..maxPiece), as a socket might. */
function source(bytes: Uint8Array, seed = 7, maxPiece = 5000) {
  const random = new SeededRandom(seed);
  let at = 0;
  return {
    read(into: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(into.length, bytes.length - at, 1 + random.below(maxPiece));
      into.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

async function readAll(reader: FrameReader): Promise<Frame[]> {
  const frames: Frame[] = [];
  for (;;) {
    const frame = await reader.next();
    if (frame === null) return frames;
    frames.push(frame);
  }
}

Deno.test("frames survive any split of the byte stream, payloads intact", async () => {
  const sizes = [0, 1, 100, 4096, 70_000, 300_000, 5, 1 << 20, 0, 3];
  const wire = concat(sizes.map((n, i) => encodeFrame({ t: "data", i, n }, pattern(n, i))));
  for (const maxPiece of [1, 7, 5000, 1 << 20]) {
    const frames = await readAll(
      new FrameReader(source(wire, maxPiece, maxPiece), { chunkBytes: 128 * 1024 }),
    );
    assert.equal(frames.length, sizes.length);
    frames.forEach((frame, i) => {
      assert.deepEqual(frame.header, { t: "data", i, n: sizes[i] });
      assert.deepEqual(frame.payload, pattern(sizes[i]!, i));
    });
  }
});

Deno.test("small payloads are views into a shared chunk that is never overwritten", async () => {
  const count = 200; // 200 x 4 KiB spans several 256 KiB chunks
  const wire = concat(
    Array.from({ length: count }, (_, i) => encodeFrame({ t: "d", i }, pattern(4096, i))),
  );
  const frames = await readAll(new FrameReader(source(wire, 3, 10_000)));
  assert.equal(frames.length, count);
  assert.equal(frames[0]!.payload.buffer, frames[1]!.payload.buffer, "views share a chunk");
  assert.ok(frames[0]!.payload.buffer.byteLength > 4096, "payload is a view, not a copy");
  const buffers = new Set(frames.map((f) => f.payload.buffer));
  assert.ok(buffers.size > 1 && buffers.size < count, `${buffers.size} chunks`);
  // Checked only now, after every later read: earlier views must still hold their bytes.
  frames.forEach((frame, i) => assert.deepEqual(frame.payload, pattern(4096, i)));
});

Deno.test("binary header fields stay intact after later reads (they are views too)", async () => {
  const count = 20_000; // ~50 bytes each: several chunks' worth, no payloads
  const wire = concat(
    Array.from({ length: count }, (_, i) => encodeFrame({ t: "b", key: pattern(16, i) })),
  );
  const frames = await readAll(new FrameReader(source(wire, 4, 3000)));
  assert.equal(frames.length, count);
  frames.forEach((frame, i) => assert.deepEqual(frame.header.key, pattern(16, i)));
});

Deno.test("a frame larger than a chunk gets its own exactly-sized buffer", async () => {
  const big = pattern(3 * 256 * 1024 + 17, 9);
  const wire = concat([encodeFrame({ t: "a" }, pattern(10, 1)), encodeFrame({ t: "big" }, big)]);
  const frames = await readAll(new FrameReader(source(wire, 5, 100_000)));
  assert.equal(frames.length, 2);
  const payload = frames[1]!.payload;
  assert.equal(payload.buffer.byteLength, big.length);
  assert.equal(payload.byteOffset, 0);
  assert.deepEqual(payload, big);
  assert.deepEqual(frames[0]!.payload, pattern(10, 1), "earlier view untouched");
});

Deno.test("given-back frames let the reader reuse their chunk; held ones are never overwritten", async () => {
  const count = 2000; // 2000 x 4 KiB: about 32 chunks' worth of bytes
  const wire = concat(
    Array.from({ length: count }, (_, i) => encodeFrame({ t: "d", i }, pattern(4096, i))),
  );
  const reader = new FrameReader(source(wire, 11, 20_000));
  const held: Frame[] = [];
  const buffers = new Set<ArrayBufferLike>();
  for (let i = 0;; i++) {
    const frame = await reader.next();
    if (frame === null) break;
    assert.deepEqual(frame.payload, pattern(4096, i), `frame ${i} as read`);
    buffers.add(frame.payload.buffer);
    if (i % 100 === 0) held.push(frame); // every 100th is kept, the rest given back
    else reader.recycle(frame);
  }
  // Fresh chunks are needed only where a held frame pins one.
  assert.ok(buffers.size <= held.length + 3, `${buffers.size} chunks for ${held.length} held`);
  held.forEach((frame, k) => assert.deepEqual(frame.payload, pattern(4096, k * 100)));
});

Deno.test("a large payload buffer is reused once given back, exactly once", async () => {
  const size = 300_000;
  const wire = concat(
    Array.from({ length: 4 }, (_, i) => encodeFrame({ t: "big", i }, pattern(size, i))),
  );
  const reader = new FrameReader(source(wire, 12, 100_000), { chunkBytes: 128 * 1024 });
  const first = (await reader.next())!;
  reader.recycle(first);
  reader.recycle(first); // a second give-back must not hand the buffer out twice
  const second = (await reader.next())!;
  const third = (await reader.next())!;
  assert.equal(second.payload.buffer, first.payload.buffer, "reused");
  assert.notEqual(third.payload.buffer, second.payload.buffer, "not handed out twice");
  assert.deepEqual(second.payload, pattern(size, 1));
  assert.deepEqual(third.payload, pattern(size, 2));
  reader.recycle({ header: { t: "x" }, payload: new Uint8Array(size) }); // not ours: ignored
  const fourth = (await reader.next())!;
  assert.notEqual(fourth.payload.buffer, second.payload.buffer, "a held buffer is never reused");
  assert.equal(fourth.payload.length, size);
  assert.deepEqual(fourth.payload, pattern(size, 3));
  assert.deepEqual(second.payload, pattern(size, 1), "held payload intact");
});

Deno.test("a lost frame does not break decoding of later ones (no msgpack records)", async () => {
  const frames = Array.from(
    { length: 5 },
    (_, i) => encodeFrame({ t: "same-shape", id: i, off: i * 10, len: 4 }, pattern(4, i)),
  );
  const wire = concat([frames[0]!, frames[2]!, frames[4]!]); // 1 and 3 were lost
  const got = await readAll(new FrameReader(source(wire)));
  assert.deepEqual(got.map((f) => f.header.id), [0, 2, 4]);
});

Deno.test("poll() hands out buffered frames without reading", async () => {
  const wire = concat([encodeFrame({ t: "a" }), encodeFrame({ t: "b" }), encodeFrame({ t: "c" })]);
  let given = false; // everything in one read
  const reader = new FrameReader({
    read(into) {
      if (given) return Promise.resolve(null);
      given = true;
      into.set(wire);
      return Promise.resolve(wire.length);
    },
  });
  assert.equal(reader.poll(), undefined);
  assert.equal((await reader.next())?.header.t, "a");
  assert.equal(reader.poll()?.header.t, "b");
  assert.equal(reader.poll()?.header.t, "c");
  assert.equal(reader.poll(), undefined);
  assert.equal(await reader.next(), null);
});

function prefixOnly(headerBytes: number, payloadBytes: number): Uint8Array {
  const out = new Uint8Array(PREFIX_BYTES);
  writePrefix(out, 0, headerBytes, payloadBytes);
  return out;
}

Deno.test("malformed input is a FrameError that says what was wrong", async (t) => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["header over the limit", prefixOnly(MAX_HEADER_BYTES + 1, 0), /header of 65537 bytes/],
    ["payload over the limit", prefixOnly(10, 2048), /payload of 2048 bytes is over the 1024/],
    ["empty header", prefixOnly(0, 0), /empty header/],
    [
      "header not a map",
      concat([prefixOnly(1, 0), new Uint8Array([0x05])]),
      /not a map with a string `t`/,
    ],
    ["undecodable header", concat([prefixOnly(2, 0), new Uint8Array([0x92, 0x01])]), /undecodable/],
    ["truncated frame", encodeFrame({ t: "x" }, pattern(100, 1)).subarray(0, 50), /truncated/],
    [
      "truncated large frame",
      encodeFrame({ t: "x" }, pattern(300_000, 1)).subarray(0, 200_000),
      /truncated/,
    ],
    ["truncated prefix", new Uint8Array([0, 0, 0]), /truncated/],
  ];
  for (const [name, wire, message] of cases) {
    await t.step(name, async () => {
      const reader = new FrameReader(source(wire), { maxPayloadBytes: 1024 * 1024 });
      const limited = name === "payload over the limit"
        ? new FrameReader(source(wire), { maxPayloadBytes: 1024 })
        : reader;
      await assert.rejects(readAll(limited), (error: Error) => {
        assert.ok(error instanceof FrameError, `${error}`);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("a clean end of stream between frames is null, not an error", async () => {
  const reader = new FrameReader(source(new Uint8Array(0)));
  assert.equal(await reader.next(), null);
});
