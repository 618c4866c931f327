/** Linear mapping: requests split at child boundaries land at the right child offsets. */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../block/memory.ts";
import { BlockError } from "../block/contract.ts";
import { LinearMapping } from "./linear.ts";

Deno.test("linear concatenates children of different sizes", async () => {
  const a = new MemoryBlockDevice({ size: 10_000 });
  const b = new MemoryBlockDevice({ size: 0 });
  const c = new MemoryBlockDevice({ size: 30_000 });
  const linear = new LinearMapping([a, b, c]);
  assert.equal(linear.info().size, 40_000);
  const data = new Uint8Array(5000).map((_, i) => i % 251);
  await linear.write(8000, data, false); // crosses a→c (b is empty)
  assert.deepEqual(await a.read(8000, 2000), data.subarray(0, 2000));
  assert.deepEqual(await c.read(0, 3000), data.subarray(2000));
  assert.deepEqual(await linear.read(8000, 5000), data);
  const into = new Uint8Array(6000);
  const view = await linear.read(7999, 5001, into);
  assert.equal(view.buffer, into.buffer);
  assert.deepEqual(view.subarray(1), data);
  await linear.zero(9000, 2000, { fua: false, fastZero: false, mayTrim: true });
  assert.deepEqual(await linear.read(9000, 2000), new Uint8Array(2000));
  const extents = await linear.extents(0, 40_000);
  assert.equal(extents.reduce((n, e) => n + e.length, 0), 40_000);
  await assert.rejects(
    linear.read(39_999, 2),
    (e) => e instanceof BlockError && e.code === "EINVAL",
  );
});
