/**
 * Throughput of the file device (both I/O modes) against the memory device, at 4 KiB and 1 MiB,
 * one request at a time and 32 in flight, plus FUA writes (fdatasync, coalesced when
 * concurrent). MB/s = bytes per iteration / time per iteration.
 *
 * Run: deno bench -A actors/block/file_bench.ts
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const DEPTH = 32;

const dir = Deno.makeTempDirSync({ prefix: "dst-bench-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

const devices: Record<string, BlockDevice> = {
  memory: new MemoryBlockDevice({ size: SIZE }),
  "file sync": await FileBlockDevice.create({ path: `${dir}/sync.img`, size: SIZE, io: "sync" }),
  "file threaded": await FileBlockDevice.create({
    path: `${dir}/threaded.img`,
    size: SIZE,
    io: "threaded",
  }),
};

// Fill every device once so reads hit written data (page cache for files).
for (const device of Object.values(devices)) {
  const chunk = new Uint8Array(8 * MiB).fill(0x5a);
  for (let at = 0; at < SIZE; at += chunk.length) await device.write(at, chunk, false);
}

for (const [name, device] of Object.entries(devices)) {
  for (const size of [4096, MiB]) {
    const label = size === MiB ? "1 MiB" : "4 KiB";
    const slots = SIZE / size;
    const buffers = Array.from({ length: DEPTH }, () => new Uint8Array(size).fill(1));
    let next = 0;
    const place = () => ((next++ * 7919) % slots) * size;
    Deno.bench(
      `${name} write ${label}`,
      { group: `write ${label}`, baseline: name === "memory" },
      async () => {
        await device.write(place(), buffers[0]!, false);
      },
    );
    Deno.bench(
      `${name} read ${label}`,
      { group: `read ${label}`, baseline: name === "memory" },
      async () => {
        await device.read(place(), size, buffers[0]!);
      },
    );
    Deno.bench(
      `${name} write ${label} x${DEPTH} in flight`,
      { group: `write ${label} x${DEPTH}`, baseline: name === "memory" },
      async () => {
        await Promise.all(buffers.map((b) => device.write(place(), b, false)));
      },
    );
    Deno.bench(
      `${name} read ${label} x${DEPTH} in flight`,
      { group: `read ${label} x${DEPTH}`, baseline: name === "memory" },
      async () => {
        await Promise.all(buffers.map((b) => device.read(place(), size, b)));
      },
    );
    if (size === 4096 && name !== "memory") {
      Deno.bench(`${name} FUA write 4 KiB`, { group: "fua" }, async () => {
        await device.write(place(), buffers[0]!, true);
      });
      Deno.bench(`${name} FUA write 4 KiB x${DEPTH} in flight`, { group: "fua" }, async () => {
        await Promise.all(buffers.map((b) => device.write(place(), b, true)));
      });
    }
  }
}
