/**
 * The races the mirror used to lose, replayed deterministically: simulated time (ManualClock),
 * legs whose operations are held at a gate until the test opens it, and no sleeps. Each would
 * leave a stale leg in sync without the leg epochs.
 */
import assert from "node:assert/strict";
import { ActorSystem } from "../runtime/system.ts";
import { BlockError, type MediaDevice } from "../block/contract.ts";
import { MemoryBlockDevice } from "../block/memory.ts";
import { ManualClock } from "../../util/clock.ts";
import { faultyMedia, fill, states } from "../../tests/support/mirror_fixture.ts";
import { FaultyDevice } from "../../tests/support/faulty_device.ts";
import { type Mirror, spawnMirror } from "./actor.ts";

const MiB = 1024 * 1024;
const CHUNK = 256 * 1024;

/** Lets every pending promise and message run (one host turn), without moving time. */
const turn = () => new Promise<void>((r) => setTimeout(r, 0));

/** Runs turns and moves simulated time until `ok` holds (bounded). */
async function until(clock: ManualClock, what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !ok(); i++) {
    await turn();
    clock.advance(5);
  }
  if (!ok()) throw new Error(`never: ${what}`);
}

/** A gate an operation waits at until the test opens it. */
class Gate {
  #open!: () => void;
  readonly opened = new Promise<void>((r) => (this.#open = r));
  reached = false;
  open(): void {
    this.#open();
  }
}

interface Rig {
  clock: ManualClock;
  system: ActorSystem;
  legs: MemoryBlockDevice[];
  faulty: FaultyDevice[];
  media: MediaDevice[];
  mirror: Mirror;
}

async function rig(pace = {}): Promise<Rig> {
  const clock = new ManualClock();
  const system = new ActorSystem({ node: "race", clock });
  const legs = [0, 1].map(() => new MemoryBlockDevice({ size: 4 * MiB }));
  const faulty = legs.map((l) => {
    const f = new FaultyDevice(l);
    f.close = () => Promise.resolve();
    return f;
  });
  const media = legs.map((l, i) => faultyMedia(l, faulty[i]!));
  const started = spawnMirror(system, faulty, {
    media,
    chunkSize: CHUNK,
    probeMs: 0,
    activityIdleMs: 50,
    legTimeoutMs: 1000,
    pace,
  });
  let mirror: Mirror | undefined;
  void started.then((m) => (mirror = m));
  await until(clock, "mirror started", () => mirror !== undefined);
  await until(clock, "initial sync", () => mirror!.inSync() === 2);
  return { clock, system, legs, faulty, media, mirror: mirror! };
}

Deno.test("race: a write that fails on a leg while its resync is being finished keeps it out", async () => {
  const r = await rig();
  const { clock, mirror, faulty, legs } = r;
  try {
    // leg1 misses a chunk, comes back, and is resynced; its final stamp is held at a gate.
    faulty[1]!.mode = "error";
    await mirror.device.write(CHUNK, fill(1), false);
    faulty[1]!.mode = "healthy";
    const gate = new Gate();
    const stamp = legs[1]!.updateMedia.bind(legs[1]!);
    let stamps = 0;
    legs[1]!.updateMedia = async (patch) => {
      // The first update marks the resync target; the second is the final member stamp.
      if (++stamps === 2) {
        gate.reached = true;
        await gate.opened;
      }
      return stamp(patch);
    };
    mirror.legReachable("leg1");
    await until(clock, "final stamp reached", () => gate.reached);
    assert.equal(mirror.legs()[1]!.state, "rebuilding");
    // Now a client write fails on leg1: it is acknowledged by leg0, and leg1 must leave.
    faulty[1]!.mode = "error";
    const write = mirror.device.write(3 * CHUNK, fill(3), true);
    await until(clock, "write acknowledged", () => mirror.legs()[1]!.state === "out");
    await write;
    faulty[1]!.mode = "healthy";
    gate.open();
    for (let i = 0; i < 20; i++) (await turn(), clock.advance(5));
    // The stamp finished after the failure: it must not promote leg1 (the bug did, and its
    // chunk 3 was then served stale forever).
    assert.equal(mirror.legs()[1]!.state, "out");
    assert.ok(mirror.legs()[1]!.outOfSyncBytes >= CHUNK, "chunk 3 stays marked");
    for (let i = 0; i < 4; i++) {
      assert.deepEqual(await mirror.device.read(3 * CHUNK, 4096), fill(3));
    }
    // Once back, it converges with the write it missed.
    mirror.legReachable("leg1");
    await until(clock, "leg1 in sync", () => mirror.inSync() === 2);
    assert.deepEqual(await legs[1]!.read(3 * CHUNK, 4096), fill(3));
  } finally {
    await r.mirror.close();
    await r.system.shutdown();
  }
});

Deno.test("race: a resync from before a second outage never promotes the leg", async () => {
  const r = await rig({ parallel: 1 });
  const { clock, mirror, faulty, legs } = r;
  try {
    faulty[1]!.mode = "error";
    for (let c = 0; c < 8; c++) await mirror.device.write(c * CHUNK, fill(c + 1), false);
    faulty[1]!.mode = "healthy";
    // The first resync copies chunk 0, then its next copy is held: the cursor is past chunk 0.
    const gate = new Gate();
    const write = legs[1]!.write.bind(legs[1]!);
    let copies = 0;
    legs[1]!.write = async (offset, data, fua) => {
      if (++copies === 2) {
        gate.reached = true;
        await gate.opened;
      }
      return write(offset, data, fua);
    };
    mirror.legReachable("leg1");
    await until(clock, "first resync under way", () => gate.reached);
    // A brief second outage: leg1 leaves and misses a write to chunk 0, behind the cursor.
    mirror.legLost("leg1", "link flapped");
    await until(clock, "leg1 out", () => mirror.legs()[1]!.state === "out");
    await mirror.device.write(0, fill(0x55), true);
    // It comes back and is judged again; the old resync then goes on and finishes.
    mirror.legReachable("leg1");
    gate.open();
    await until(clock, "leg1 in sync", () => mirror.inSync() === 2);
    // Without epochs the old job promoted leg1 with chunk 0 stale.
    assert.deepEqual(await legs[1]!.read(0, 4096), fill(0x55));
    for (let c = 1; c < 8; c++) assert.deepEqual(await legs[1]!.read(c * CHUNK, 4096), fill(c + 1));
    assert.deepEqual(states(mirror), ["in-sync", "in-sync"]);
  } finally {
    await r.mirror.close();
    await r.system.shutdown();
  }
});

Deno.test("race: a bitmap store that fails on a leg fails that leg, never the write", async () => {
  const r = await rig();
  const { clock, mirror, legs } = r;
  try {
    const store = legs[1]!.storeBitmap.bind(legs[1]!);
    legs[1]!.storeBitmap = () => Promise.reject(new BlockError("EIO", "bitmap page lost"));
    await mirror.device.write(5 * CHUNK, fill(5), true);
    await until(clock, "leg1 out", () => mirror.legs()[1]!.state === "out");
    assert.match(mirror.legs()[1]!.reason ?? "", /bitmap store failed/);
    legs[1]!.storeBitmap = store;
    assert.deepEqual(await mirror.device.read(5 * CHUNK, 4096), fill(5));
  } finally {
    await r.mirror.close();
    await r.system.shutdown();
  }
});
