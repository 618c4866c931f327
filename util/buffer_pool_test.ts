/** The buffer pool hands back what it was given, sizes classes so headers fit, and is bounded. */
import assert from "node:assert/strict";
import { BufferPool } from "./buffer_pool.ts";
import { hold } from "./buffer_lease.ts";

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
  const pool = new BufferPool({ maxIdleBytes: 2 * (8192 + 128) });
  pool.put(new Uint8Array(5000));
  const whole = pool.get(4096);
  pool.put(whole.subarray(1));
  assert.notEqual(pool.get(4096), whole.subarray(1));
  const many = [pool.get(4096), pool.get(4096), pool.get(4096)];
  for (const b of many) pool.put(b);
  const again = new Set([pool.get(4096), pool.get(4096), pool.get(4096)]);
  assert.ok(many.filter((b) => again.has(b)).length <= 2, "kept more than the idle budget");
});

Deno.test("pool: buffers for huge requests are not kept; with free they are released now", () => {
  const pool = new BufferPool({ maxPooledBuffer: 1024 * 1024 });
  const huge = pool.get(32 * 1024 * 1024);
  pool.put(huge);
  assert.equal(pool.idleBytes, 0);
  assert.ok(huge.length > 0, "without free the buffer is left to the garbage collector");
  const reply = pool.get(32 * 1024 * 1024);
  pool.put(reply, true);
  assert.equal(reply.length, 0, "a written reply's buffer is detached: its memory goes back now");
  const small = pool.get(4096);
  pool.put(small, true);
  assert.equal(small.length, 4096 + 64, "a buffer the pool keeps is not detached");
  assert.equal(pool.get(4096), small);
});

Deno.test("pool: idle bytes are bounded over all classes, not per class", () => {
  const pool = new BufferPool({ maxIdleBytes: 4 * 1024 * 1024, maxPooledBuffer: 1024 * 1024 });
  const held: Uint8Array[] = [];
  for (let size = 4096; size <= 1024 * 1024; size *= 2) {
    for (let i = 0; i < 8; i++) held.push(pool.get(size));
  }
  for (const b of held) pool.put(b);
  assert.ok(pool.idleBytes <= 4 * 1024 * 1024, `kept ${pool.idleBytes} idle bytes`);
  assert.ok(pool.idleBytes > 0);
});

Deno.test("pool: a buffer still held by a leg comes back only when the leg lets go", () => {
  const pool = new BufferPool();
  const a = pool.get(4096);
  const release = hold(a.subarray(100, 200)); // e.g. a request still waiting for its node
  pool.put(a); // the owner (the NBD session) is done with it
  const b = pool.get(4096);
  assert.notEqual(b, a, "not handed out again while held");
  release();
  release(); // a second release changes nothing
  pool.put(b);
  const c = pool.get(4096);
  assert.ok(c === a || c === b, "back in the pool once free");
});
