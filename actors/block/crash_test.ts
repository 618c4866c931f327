/**
 * Crash test: a child process writes with FUA to a file device and reports each acknowledged
 * block; it is killed with SIGKILL mid-stream, and every acknowledged block must read back from
 * the reopened file. (A process kill, not a power cut: it proves the device acknowledges only
 * completed writes and leaves valid metadata, not the disk's own cache behaviour.)
 */
import assert from "node:assert/strict";
import { FileBlockDevice } from "./file.ts";
import { checkBlock } from "../../drill/block_stamps.ts";

const MiB = 1024 * 1024;
const KILL_AFTER_ACKS = 300;

for (const io of ["sync", "threaded"] as const) {
  Deno.test(`crash: every FUA-acknowledged block survives SIGKILL (${io} I/O)`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "dst-crash-" });
    let child: Deno.ChildProcess | undefined;
    try {
      const path = `${dir}/node.img`;
      const created = await FileBlockDevice.create({ path, size: 64 * MiB });
      const storageId = created.meta.storageId;
      await created.close();

      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          new URL("../../tests/support/crash_writer.ts", import.meta.url).pathname,
          path,
          io,
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const acked: [number, number][] = [];
      let pending = "";
      let killed = false;
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) {
          const [word, offset, seq] = line.split(" ");
          assert.equal(word, "ack", `the writer finished before it was killed: ${line}`);
          acked.push([Number(offset), Number(seq)]);
        }
        if (!killed && acked.length >= KILL_AFTER_ACKS) {
          child.kill("SIGKILL");
          killed = true;
        }
      }
      const status = await child.status;
      child = undefined;
      assert.equal(status.signal, "SIGKILL");
      assert.ok(acked.length >= KILL_AFTER_ACKS);

      const device = await FileBlockDevice.open({ path, expectStorageId: storageId });
      try {
        for (const [offset, seq] of acked) {
          const got = checkBlock(await device.read(offset, 4096), offset);
          if (got instanceof Error) assert.fail(`acknowledged seq ${seq} lost: ${got.message}`);
          assert.deepEqual(got, { writer: 1, seq });
        }
      } finally {
        await device.close();
      }
    } finally {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        await child.stdout.cancel().catch(() => {});
        await child.status;
      }
      await Deno.remove(dir, { recursive: true });
    }
  });
}
