/**
 * The Attach line `dst start` prints works when pasted into a shell as it is, on a machine where
 * its mount folder does not exist yet: it makes the folder, waits for nbdfuse to serve, and
 * prints the loop device, which then holds the mirror (its size, and data written through it
 * read back over NBD). The Detach line undoes it.
 */
import assert from "node:assert/strict";
import { mustRun, run, skipWithout } from "./support/nbd_harness.ts";
import { kill, spawnStart, withTempDir } from "./support/cli_run.ts";

Deno.test({
  name: "dst start: the printed Attach line, pasted, attaches the mirror as a loop device",
  ignore: skipWithout("nbdfuse", "fusermount3", "losetup", "blockdev", "nbdcopy"),
  fn: () =>
    withTempDir("dst-attach-", async (dir) => {
      const data = `${dir}/data`;
      const start = await spawnStart([
        "--data",
        data,
        "--size",
        "8M",
        "--nbd",
        `unix://${dir}/nbd.sock`,
        "--status",
        "127.0.0.1:0",
      ]);
      const line = (name: string) =>
        start.lines.find((l) => l.startsWith(`${name}:`))!.slice(name.length + 1).trim();
      let loop: string | undefined;
      try {
        await assert.rejects(Deno.lstat(`${data}/mnt`), "the mount folder is not there yet");
        // As typed into a terminal; the output goes to files, not pipes, since nbdfuse stays
        // in the background holding them.
        const out = `${dir}/attach.out`;
        const attach = await run("sh", ["-c", `exec >${out} 2>&1; ${line("Attach")}`], {
          timeoutMs: 30_000,
        });
        const said = await Deno.readTextFile(out);
        assert.equal(attach.code, 0, said);
        loop = said.trim().split("\n").at(-1);
        assert.match(loop ?? "", /^\/dev\/loop\d+$/, said);
        assert.equal((await mustRun("blockdev", ["--getsize64", loop!])).trim(), String(8 << 20));
        const block = new Uint8Array(4096).map((_, i) => (i * 7 + 3) & 0xff);
        await Deno.writeFile(`${dir}/block`, block);
        await mustRun("dd", [`if=${dir}/block`, `of=${loop}`, "bs=4096", "seek=5", "oflag=direct"]);
        await mustRun("sync", []);
        const back = `${dir}/back.img`;
        await mustRun("nbdcopy", [start.nbd, back]);
        const image = await Deno.readFile(back);
        assert.deepEqual(image.subarray(5 * 4096, 6 * 4096), block, "written through the loop");
        const detach = await run("sh", ["-c", line("Detach")], { timeoutMs: 30_000 });
        assert.equal(detach.code, 0, detach.stderr);
        loop = undefined;
      } finally {
        if (loop !== undefined) {
          await run("losetup", ["-d", loop]);
          await run("fusermount3", ["-u", `${data}/mnt`]);
        }
        kill(-start.pid, "SIGINT");
        await start.exited();
      }
    }),
});
