/**
 * Child process of the crash test: opens a file device and writes self-describing blocks with
 * FUA, several in flight, printing "ack <offset> <seq>" only once each write is acknowledged.
 * The parent kills it with SIGKILL mid-stream and checks every printed block survived.
 *
 * Usage: deno run -A tests/support/crash_writer.ts <path> <sync|threaded>
 */
import { FileBlockDevice } from "../../actors/block/file.ts";
import type { IoMode } from "../../actors/block/raw_file.ts";
import { fillBlock } from "../../drill/block_stamps.ts";

const BLOCK = 4096;
const DEPTH = 8;

const [path, io] = Deno.args;
if (!path || (io !== "sync" && io !== "threaded")) {
  console.error("usage: crash_writer.ts <path> <sync|threaded>");
  Deno.exit(2);
}
const device = await FileBlockDevice.open({ path, io: io as IoMode });
const blocks = Math.floor(device.info().size / BLOCK);
const encoder = new TextEncoder();
let next = 0;

async function writer(): Promise<void> {
  const buf = new Uint8Array(BLOCK);
  while (next < blocks) {
    const seq = next++;
    // Spread the blocks over the device so acknowledged data is not one sequential run.
    const offset = ((seq * 7919) % blocks) * BLOCK;
    fillBlock(buf, offset, 1, seq);
    await device.write(offset, buf, true);
    Deno.stdout.writeSync(encoder.encode(`ack ${offset} ${seq}\n`));
  }
}

await Promise.all(Array.from({ length: DEPTH }, writer));
await device.close();
Deno.stdout.writeSync(encoder.encode("done\n"));
