/** The buffer pool hands back what it was given, sizes classes so headers fit, and is bounded. */
import assert from "node:assert/strict";
import { BufferPool } from "./pool.ts";

Deno.test("pool: a returned buffer is reused for the same class", () => {
  const pool = new BufferPool();
  const a = pool.get(4096);
  assert.ok(a.length >= 4096);
  pool.put(a);
  assert.equal(pool.get(100), a);
});

Deno.test("pool: a power-of-two payload plus a 40-byte header stays in its class", () => {
  const pool = new BufferPool();
  const b = pool.get(256 * 1024 + 40);
  assert.ok(b.length >= 256 * 1024 + 40);
  assert.ok(b.length < 512 * 1024, `class too large: ${b.length}`);
});

Deno.test("pool: foreign or sliced buffers are not taken, idle bytes are bounded", () => {
  const pool = new BufferPool(8192 + 128);
  pool.put(new Uint8Array(5000));
  const whole = pool.get(4096);
  pool.put(whole.subarray(1));
  assert.notEqual(pool.get(4096), whole.subarray(1));
  const many = [pool.get(4096), pool.get(4096), pool.get(4096)];
  for (const b of many) pool.put(b);
  const again = new Set([pool.get(4096), pool.get(4096), pool.get(4096)]);
  assert.ok(many.filter((b) => again.has(b)).length <= 2, "kept more than the idle budget");
});
