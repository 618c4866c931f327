/**
 * The mirror's reads land in the caller's buffer without a copy, and stay correct when a leg
 * answers late: a read that failed over returns its data elsewhere, the caller's buffer stays
 * held (not reused) while the abandoned attempt may still write into it, and a large read is
 * spread over the legs.
 */
import assert from "node:assert/strict";
import { landedIn } from "../block/contract.ts";
import { BufferPool } from "../../util/buffer_pool.ts";
import { holders } from "../../util/buffer_lease.ts";
import { LATE_ANSWER } from "../../tests/support/faulty_device.ts";
import { fill, mirrorFixture, states, until } from "../../tests/support/mirror_fixture.ts";

const plain = { noMedia: true } as const;

Deno.test("mirror reads: a healthy read lands in the caller's buffer", async () => {
  const f = await mirrorFixture(2, plain);
  try {
    await f.mirror.device.write(0, fill(7, 65536), false);
    const pool = new BufferPool();
    const buffer = pool.get(65536);
    const into = buffer.subarray(0, 65536);
    const data = await f.mirror.device.read(0, 65536, into);
    assert.ok(landedIn(data, into), "the data came back in another buffer");
    assert.deepEqual(data, fill(7, 65536));
  } finally {
    await f.close();
  }
});

Deno.test("mirror reads: a leg that answers after failover cannot reach the data or a reused buffer", async () => {
  const f = await mirrorFixture(2, { ...plain, legTimeoutMs: 100 });
  try {
    await f.mirror.device.write(0, fill(7, 65536), false);
    f.faulty[0]!.mode = "hang";
    const pool = new BufferPool();
    // Round robin: one of two reads goes to the hung leg first and fails over.
    const reads: { buffer: Uint8Array; data: Uint8Array }[] = [];
    for (let i = 0; i < 2; i++) {
      const buffer = pool.get(65536);
      const data = await f.mirror.device.read(0, 65536, buffer.subarray(0, 65536));
      assert.deepEqual(data, fill(7, 65536));
      reads.push({ buffer, data });
      pool.put(buffer);
    }
    await until("leg 0 failed", () => states(f.mirror)[0] !== "in-sync");
    const abandoned = reads.find((r) => holders(r.buffer) > 0);
    assert.ok(abandoned, "no buffer is held by the hung read");
    assert.ok(!landedIn(abandoned.data, abandoned.buffer), "the failed-over read used the buffer");
    // While the hung read holds it, the pool lends other buffers.
    const other = pool.get(65536);
    assert.notEqual(other.buffer, abandoned.buffer.buffer);
    // The late answer lands in the abandoned buffer, not in what the caller was given.
    f.faulty[0]!.releaseHung();
    assert.equal(abandoned.buffer[0], LATE_ANSWER);
    assert.deepEqual(abandoned.data, fill(7, 65536));
    assert.equal(holders(abandoned.buffer), 0);
    pool.put(other);
  } finally {
    await f.close();
  }
});

Deno.test("mirror reads: a large read is spread over the in-sync legs", async () => {
  const f = await mirrorFixture(3, plain);
  try {
    const size = 1024 * 1024;
    const pattern = new Uint8Array(size).map((_, i) => (i * 31) >> 12);
    await f.mirror.device.write(0, pattern, false);
    const before = f.faulty.map((d) => d.calls);
    const into = new Uint8Array(size);
    const data = await f.mirror.device.read(0, size, into);
    assert.deepEqual(data, pattern);
    assert.ok(landedIn(data, into));
    assert.deepEqual(f.faulty.map((d, i) => d.calls - before[i]!), [1, 1, 1]);
  } finally {
    await f.close();
  }
});
