/** The simulated disk: what survives a crash, what a sync makes durable, and the file device on it. */
import assert from "node:assert/strict";
import { FileBlockDevice } from "../actors/block/file.ts";
import { SimDisk } from "./disk.ts";
import { fork } from "./rng.ts";
import { ProcessClock, SimClock } from "./scheduler.ts";

const profile = { io: "sync" as const, latencyMs: 0, jitterMs: 0, keep: 0, tear: false };

function disk(keep = 0, tear = false) {
  const clock = new ProcessClock(new SimClock(fork(1, "t")));
  const d = new SimDisk("d", { ...profile, keep, tear }, fork(1, "disk"), 8192);
  return { d, file: d.open(clock) };
}

Deno.test("sim disk: a crash loses what was not synced, keeps what was", async () => {
  const { d, file } = disk(0);
  file.writeNow(new Uint8Array(4096).fill(1), 65536);
  await file.sync();
  file.writeNow(new Uint8Array(4096).fill(2), 65536);
  assert.equal(d.peek(65536, 1)[0], 2, "a read sees the cache");
  d.crash();
  assert.equal(d.peek(65536, 1)[0], 1, "the unsynced write is gone");
  assert.throws(() => file.readNow(new Uint8Array(1), 0), /closed/, "the old handle is dead");
});

Deno.test("sim disk: a sync covers the writes made before it began, not after", async () => {
  const { d, file } = disk(0);
  file.writeNow(new Uint8Array(512).fill(1), 0);
  const syncing = file.sync();
  file.writeNow(new Uint8Array(512).fill(2), 512);
  await syncing;
  d.crash();
  assert.equal(d.peek(0, 1)[0], 1);
  assert.equal(d.peek(512, 1)[0], 0);
});

Deno.test("sim disk: a metadata write cut by a crash may land in part (torn)", () => {
  let torn = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const clock = new ProcessClock(new SimClock(fork(seed, "t")));
    const d = new SimDisk("d", { ...profile, keep: 1, tear: true }, fork(seed, "disk"), 8192);
    d.open(clock).writeNow(new Uint8Array(4096).fill(7), 0);
    d.crash();
    const page = d.peek(0, 4096);
    if (page[0] === 7 && page[4095] === 0) torn++;
  }
  assert.ok(torn > 0, "some crash tore the header write");
});

Deno.test("sim disk: the real file device formats, crashes and reopens on it", async () => {
  const { d, file } = disk(0, true);
  const created = await FileBlockDevice.create({ path: file.path, raw: file, size: 65536 });
  await created.write(0, new Uint8Array(4096).fill(9), true);
  await created.write(4096, new Uint8Array(4096).fill(8), false);
  d.crash();
  const clock = new ProcessClock(new SimClock(fork(2, "t")));
  const reopened = await FileBlockDevice.open({ path: file.path, raw: d.open(clock) });
  assert.equal(reopened.meta.storageId, created.meta.storageId);
  assert.equal((await reopened.read(0, 1))[0], 9, "the FUA write is durable");
  assert.equal((await reopened.read(4096, 1))[0], 0, "the plain write was in the cache only");
});
