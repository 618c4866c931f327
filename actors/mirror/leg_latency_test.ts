/** Per-leg latency histograms: buckets, and that the mirror times each leg's own answers. */
import assert from "node:assert/strict";
import { fill, mirrorFixture } from "../../tests/support/mirror_fixture.ts";
import { LATENCY_BUCKETS, LatencyHistogram } from "../../util/latency_histogram.ts";

Deno.test("latency histogram: cumulative buckets, sum and count", () => {
  const h = new LatencyHistogram();
  h.record(0.05); // 50 µs: first bucket
  h.record(3); // 3 ms: the 5 ms bucket
  h.record(60_000); // a minute: +Inf only
  const s = h.snapshot();
  assert.equal(s.count, 3);
  assert.ok(Math.abs(s.sumSeconds - 60.00305) < 1e-9);
  assert.equal(s.buckets.length, LATENCY_BUCKETS.length + 1);
  assert.equal(s.buckets[0], 1);
  assert.equal(s.buckets[LATENCY_BUCKETS.indexOf(0.0025)], 1);
  assert.equal(s.buckets[LATENCY_BUCKETS.indexOf(0.005)], 2);
  assert.equal(s.buckets.at(-2), 2);
  assert.equal(s.buckets.at(-1), 3);
});

Deno.test("mirror: each leg's reads, writes and flushes land in its own histogram", async () => {
  const f = await mirrorFixture(2, { noMedia: true, size: 1024 * 1024 });
  try {
    await f.mirror.device.write(0, fill(1), false);
    await f.mirror.device.write(4096, fill(2), false);
    await f.mirror.device.flush();
    for (let i = 0; i < 4; i++) await f.mirror.device.read(0, 4096);
    const legs = f.mirror.legs();
    for (const leg of legs) {
      assert.equal(leg.latency.write.count, 2, `${leg.name} writes`);
      assert.equal(leg.latency.flush.count, 1, `${leg.name} flushes`);
      assert.equal(leg.latency.write.buckets.at(-1), 2);
    }
    // Reads go to one leg each, spread over both.
    assert.deepEqual(legs.map((l) => l.latency.read.count), legs.map((l) => l.reads));
    assert.equal(legs.reduce((n, l) => n + l.latency.read.count, 0), 4);
    // A failed leg's error is counted as an error, not as an answer.
    f.faulty[1]!.mode = "error";
    await f.mirror.device.write(0, fill(3), false);
    assert.equal(f.mirror.legs()[1]!.latency.write.count, 2);
    assert.equal(f.mirror.legs()[0]!.latency.write.count, 3);
  } finally {
    await f.close();
  }
});
