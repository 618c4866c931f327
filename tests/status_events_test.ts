/**
 * The event history and the chart samples, in the process: the ring keeps the last events and
 * tells a poller how many it missed; leg moves become events (a resync starting and ending, the
 * mirror going down and serving again); control actions and verify results are recorded; the
 * routes check their query; samples turn counters into rates per interval.
 */
import assert from "node:assert/strict";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import type { LegStatus } from "../actors/mirror/status.ts";
import { statusApp } from "../status/app.ts";
import { EventLog, legMoves, recordedControl } from "../status/events.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { Sampler, SampleRing } from "../status/samples.ts";
import { statusFixture } from "./support/status_fixture.ts";

Deno.test("event log: ids grow, the ring keeps the newest, a poller learns what it missed", () => {
  let t = 1000;
  const log = new EventLog(3, () => t++);
  assert.deepEqual(log.since(0), { events: [], latest: 0, missed: 0 });
  for (let i = 1; i <= 5; i++) log.add({ level: "info", kind: "process", message: `e${i}` });
  const all = log.since(0);
  assert.deepEqual(all.events.map((e) => [e.id, e.message, e.time]), [
    [3, "e3", 1002],
    [4, "e4", 1003],
    [5, "e5", 1004],
  ]);
  assert.equal(all.latest, 5);
  assert.equal(all.missed, 2, "e1 and e2 fell out before they were read");
  assert.deepEqual(log.since(4).events.map((e) => e.id), [5]);
  assert.equal(log.since(4).missed, 0);
  assert.deepEqual(log.since(5).events, []);
  assert.deepEqual(log.since(99).events, [], "an id from the future finds nothing");
  assert.deepEqual(log.since(2, 1).events.map((e) => e.id), [3], "limit");
  assert.throws(() => new EventLog(0), RangeError);
});

const leg = (name: string, state: LegStatus["state"], reason?: string): LegStatus => ({
  name,
  state,
  ...(reason === undefined ? {} : { reason }),
  inStateMs: 0,
  epoch: 1,
  reads: 0,
  writes: 0,
  errors: 0,
  outOfSyncBytes: 0,
  resyncedBytes: 3 * 1024 * 1024,
  copiedBytes: 0,
  latency: {
    read: { count: 0, sumSeconds: 0, buckets: [] },
    write: { count: 0, sumSeconds: 0, buckets: [] },
    flush: { count: 0, sumSeconds: 0, buckets: [] },
  },
});

Deno.test("event log: leg moves become events; the mirror going down and back is said once", () => {
  const log = new EventLog();
  const moved = legMoves(log);
  moved("m", leg("a", "in-sync"));
  moved("m", leg("b", "in-sync"));
  moved("m", leg("b", "suspended", "suspended by the administrator"));
  moved("m", leg("b", "suspended")); // no move: nothing
  moved("m", leg("a", "out", "write failed: EIO"));
  moved("m", leg("b", "rebuilding"));
  moved("m", leg("a", "rebuilding"));
  moved("m", leg("b", "in-sync"));
  const events = log.since(0).events;
  assert.deepEqual(events.map((e) => [e.kind, e.level, e.message]), [
    ["leg", "info", "a is in sync (was judging)"],
    ["leg", "info", "b is in sync (was judging)"],
    ["leg", "warn", "b left the in-sync set: in-sync → suspended: suspended by the administrator"],
    ["leg", "warn", "a left the in-sync set: in-sync → out: write failed: EIO"],
    ["mirror", "error", "m is down: no leg is in sync (a was the last)"],
    ["resync", "info", "resync of b started (was suspended)"],
    ["resync", "info", "resync of a started (was out)"],
    ["resync", "info", "resync of b done: in sync (3.0 MiB resynced)"],
    ["mirror", "info", "m serves again: b is in sync"],
  ]);
  assert.deepEqual([events[2]!.from, events[2]!.to, events[2]!.node, events[2]!.mirror], [
    "in-sync",
    "suspended",
    "b",
    "m",
  ]);
});

Deno.test("event log: control actions, refusals and verify results are recorded", async () => {
  const log = new EventLog();
  const fixture = statusFixture();
  const control = recordedControl(fixture.control, log);
  await control.suspend("a");
  await assert.rejects(control.suspend("b"), /already suspended/);
  await control.verify("m");
  await assert.rejects(control.verify("a"), /not a mirror/);
  const verifying = recordedControl({
    ...fixture.control,
    verify: () =>
      Promise.resolve({
        ok: true,
        message: "verify found 1 chunk(s) (4096 bytes) differing",
        verify: {
          at: 0,
          legs: ["a", "b"],
          chunksCompared: 64,
          mismatchedChunks: 1,
          mismatchedBytes: 4096,
          repairedBytes: {},
          unresolvedBytes: 4096,
        },
      }),
  }, log);
  await verifying.verify("m");
  assert.deepEqual(log.since(0).events.map((e) => [e.kind, e.level, e.node, e.message]), [
    ["control", "info", "a", "suspend a: a suspended"],
    ["control", "warn", "b", "suspend b refused: b is already suspended"],
    ["control", "info", "m", "verify m: verify started"],
    ["control", "warn", "a", "verify a refused: a is not a mirror"],
    ["verify", "error", "m", "verify m: verify found 1 chunk(s) (4096 bytes) differing"],
  ]);
  assert.deepEqual(fixture.calls.map((c) => c.action), ["suspend", "suspend", "verify", "verify"]);
});

Deno.test("status app: GET /api/events and /api/samples, with a checked ?since", async () => {
  const fixture = statusFixture();
  const events = new EventLog();
  const samples = new SampleRing();
  const app = statusApp({ name: "m", tree: fixture.tree, exports: [], events, samples });
  events.add({ level: "warn", kind: "leg", node: "b", message: "b left" });
  events.add({ level: "info", kind: "leg", node: "b", message: "b back" });
  const page = await (await app.request("/api/events?since=1")).json();
  assert.deepEqual(page.events.map((e: { message: string }) => e.message), ["b back"]);
  assert.equal(page.latest, 2);
  assert.equal((await (await app.request("/api/events")).json()).events.length, 2);
  for (const bad of ["-1", "x", "1.5", "99999999999999999999"]) {
    const r = await app.request(`/api/events?since=${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match((await r.json()).error, /\?since=.*whole number/);
  }
  assert.equal((await app.request("/api/events?limit=z")).status, 400);
  const empty = await (await app.request("/api/samples")).json();
  assert.deepEqual(empty, { intervalMs: 1000, samples: [] });
  // A process without a history answers an empty one.
  const bare = statusApp({ name: "m", tree: fixture.tree, exports: [] });
  assert.deepEqual(await (await bare.request("/api/events")).json(), {
    events: [],
    latest: 0,
    missed: 0,
  });
});

Deno.test("samples: counters become rates and average latencies per interval; the ring is bounded", async () => {
  const device = new CountingBlockDevice(new MemoryBlockDevice({ size: 1024 * 1024 }));
  let now = 10_000;
  const ring = new SampleRing(3);
  const sampler = new Sampler({ tree: statusFixture().tree, io: device.stats }, ring, () => now);
  sampler.tick(); // the first reading has nothing to compare with
  assert.deepEqual(ring.since(), []);
  await device.write(0, new Uint8Array(8192), false);
  await device.write(8192, new Uint8Array(8192), false);
  now += 2000;
  sampler.tick();
  const [s] = ring.since();
  assert.equal(s!.time, 12_000);
  assert.equal(s!.writeBytesPerSec, 8192, "16 KiB over 2 s");
  assert.equal(s!.writeOpsPerSec, 1);
  assert.equal(s!.readOpsPerSec, 0);
  assert.equal(s!.readLatencyMs, null, "no read ended: no latency, not zero");
  assert.ok(s!.writeLatencyMs !== null && s!.writeLatencyMs >= 0);
  assert.equal(s!.resyncBytesPerSec, 8 * 1024 * 1024, "the fixture's leg a resyncs at 8 MiB/s");
  assert.ok("a" in s!.legLatencyMs, "leg a reports latency");
  for (let i = 0; i < 5; i++) {
    now += 1000;
    sampler.tick();
  }
  assert.equal(ring.since().length, 3, "bounded");
  assert.deepEqual(ring.since(16_000).map((x) => x.time), [17_000]);
  await device.close();
});
