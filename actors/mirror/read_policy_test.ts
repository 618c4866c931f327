/** Read policies: round robin alternates; nearest keeps a sequential stream on one leg. */
import assert from "node:assert/strict";
import { ReadPolicy } from "./read_policy.ts";

const all = () => true;

Deno.test("read policy: round robin spreads reads and skips unusable legs", () => {
  const p = new ReadPolicy("round-robin");
  assert.deepEqual([0, 1, 2, 3].map(() => p.pick(3, all, 0, 4096)), [0, 1, 2, 0]);
  assert.deepEqual([0, 1, 2].map(() => p.pick(3, (i) => i !== 1, 0, 4096)), [2, 0, 2]);
  assert.equal(p.pick(2, () => false, 0, 1), -1);
});

Deno.test("read policy: nearest keeps two interleaved sequential streams on their own legs", () => {
  const p = new ReadPolicy("nearest");
  const a = p.pick(2, all, 0, 4096);
  const b = p.pick(2, all, 1 << 30, 4096);
  assert.notEqual(a, b);
  for (let i = 1; i < 10; i++) {
    assert.equal(p.pick(2, all, i * 4096, 4096), a);
    assert.equal(p.pick(2, all, (1 << 30) + i * 4096, 4096), b);
  }
});
