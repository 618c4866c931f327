/**
 * Requests up to 64 MiB, as nbdkit takes them: nbd-tester-client's integrityhuge trace sends
 * reads of 47.6 MiB without asking the block size, and dst used to answer EINVAL. A real
 * `dst export --memory` (whose device takes 32 MiB at most) advertises 64 MiB and answers a
 * 48 MiB write and read in one request each.
 */
import assert from "node:assert/strict";
import { checkBlock, fillBlock } from "../drill/block_stamps.ts";
import { spawnDst } from "./support/dst_process.ts";
import { hasTool, skipWithout } from "./support/nbd_harness.ts";
import { openExport } from "./support/nbd_raw_client.ts";

const MiB = 1024 * 1024;
const CMD_READ = 0;
const CMD_WRITE = 1;

Deno.test({
  name: "nbd: a 48 MiB write and read in one request each, and 64 MiB advertised",
  ignore: skipWithout("nbdinfo"),
  fn: async () => {
    const server = await spawnDst(
      ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "128M"],
      { ready: /^nbd/ },
    );
    try {
      const uri = server.lines.find((l) => l.startsWith("nbd"))!;
      const port = Number(uri.match(/:(\d+)\//)![1]);
      if (hasTool("nbdinfo")) {
        const info = await new Deno.Command("nbdinfo", { args: ["--json", uri], stdout: "piped" })
          .output();
        const json = JSON.parse(new TextDecoder().decode(info.stdout));
        assert.equal(json.exports[0]["block_size_maximum"], 64 * MiB);
      }
      const { client } = await openExport(port);
      try {
        const length = 48 * MiB;
        const offset = 8 * MiB;
        const payload = new Uint8Array(length);
        for (let at = 0; at < length; at += 4096) {
          fillBlock(payload.subarray(at, at + 4096), offset + at, 3, 7);
        }
        await client.request(CMD_WRITE, 1, offset, length, { payload });
        assert.equal((await client.reply()).error, 0, "the 48 MiB write is taken");
        await client.request(CMD_READ, 2, offset, length);
        const read = await client.reply(length);
        assert.equal(read.error, 0, "the 48 MiB read is answered");
        for (let at = 0; at < length; at += 4096) {
          const stamp = checkBlock(read.payload.subarray(at, at + 4096), offset + at);
          assert.ok(!(stamp instanceof Error), `block at ${offset + at}: ${stamp}`);
          assert.equal(stamp.seq, 7);
        }
      } finally {
        client.close();
      }
    } finally {
      await server.stop();
    }
  },
});
