/** The decision table, row by row, and generation rotation. */
import assert from "node:assert/strict";
import { NO_GENERATION } from "../block/media.ts";
import { decide, isMember, memberFlags, rotate, settle } from "./generations.ts";
import { ChunkBits, rechunk } from "./chunk_bits.ts";

const A = "00000000000000aa";
const B = "00000000000000bb";
const C = "00000000000000cc";
const D = "00000000000000dd";
const g = (current: string, bitmap = NO_GENERATION, history: string[] = []) => ({
  current,
  bitmap,
  history,
});

Deno.test("decide: same current -> same", () => {
  assert.equal(decide(g(A), g(A)).kind, "same");
});
Deno.test("decide: leg's current is the serving bitmap id -> bitmap resync", () => {
  assert.equal(decide(g(B, A, [A]), g(A)).kind, "bitmap");
});
Deno.test("decide: leg's current newer than the bitmap id in history -> bitmap resync", () => {
  assert.equal(decide(g(C, A, [B, A]), g(B, A, [A])).kind, "bitmap");
});
Deno.test("decide: leg older than the bitmap reaches -> full resync", () => {
  assert.equal(decide(g(C, NO_GENERATION, [B, A]), g(A)).kind, "full");
});
Deno.test("decide: new media -> full resync", () => {
  assert.equal(decide(g(A), g(NO_GENERATION)).kind, "full");
});
Deno.test("decide: serving legs behind the leg -> newer (refused)", () => {
  assert.equal(decide(g(A), g(B, A, [A])).kind, "newer");
});
Deno.test("decide: both written apart -> split brain", () => {
  const d = decide(g(B, A, [A]), g(C, A, [A]));
  assert.equal(d.kind, "split-brain");
  assert.match((d as { why: string }).why, /split brain/);
});
Deno.test("decide: no common history -> unrelated", () => {
  assert.equal(decide(g(A), g(D)).kind, "unrelated");
});
Deno.test("rotate keeps the oldest tracking id as bitmap, settle clears it", () => {
  const once = rotate(g(A), B);
  assert.deepEqual(once, g(B, A, [A]));
  const twice = rotate(once, C);
  assert.deepEqual(twice, g(C, A, [B, A]));
  assert.equal(decide(twice, g(A)).kind, "bitmap");
  assert.equal(decide(twice, g(B, A, [A])).kind, "bitmap");
  assert.deepEqual(settle(twice), g(C, NO_GENERATION, [B, A]));
});
Deno.test("membership needs the flag, a generation and the storage id", () => {
  const state = {
    storageId: "s",
    generations: g(A),
    flags: memberFlags(1 << 20),
    bitmapBytes: 4096,
    outdated: [],
  };
  assert.ok(isMember(state, "s"));
  assert.ok(!isMember(state, "t"));
  assert.ok(!isMember({ ...state, flags: 0 }, "s"));
  assert.ok(!isMember(undefined, "s"));
});
Deno.test("bitmap: set, clear, count, walk, rechunk", () => {
  const bits = new ChunkBits(20);
  assert.ok(bits.set(3));
  assert.ok(!bits.set(3));
  bits.set(17);
  assert.equal(bits.count(), 2);
  assert.equal(bits.next(0), 3);
  assert.equal(bits.next(4), 17);
  assert.equal(bits.next(18), -1);
  assert.ok(bits.clear(3));
  assert.equal(ChunkBits.full(20).count(), 20);
  const coarse = rechunk(bits, 4096, 16384, 5);
  assert.deepEqual([coarse.has(4), coarse.count()], [true, 1]);
});
