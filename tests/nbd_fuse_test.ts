/**
 * The whole stack a person would use: `dst export` as a real process, nbdfuse exposing it as a
 * file, a loop device on that file, ext4 made and mounted on it, files written, unmounted, fsck
 * clean, mounted again and the files intact. Mount, loop and FUSE are cleaned up even on failure.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { mustRun, randomBytes, run, skipWithout, spawnExport } from "./support/nbd_harness.ts";

const tools = ["nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "fsck.ext4", "mount", "umount"];

async function waitFor(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test({
  name: "nbdfuse + losetup + mkfs.ext4 + mount: files survive unmount, fsck and remount",
  ignore: skipWithout(...tools),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-fuse-" });
    const fuseDir = `${dir}/fuse`;
    const fsDir = `${dir}/fs`;
    await Deno.mkdir(fuseDir);
    await Deno.mkdir(fsDir);
    const server = await spawnExport(["--listen", `unix://${dir}/nbd.sock`, "--memory", "64M"]);
    let fuse: Deno.ChildProcess | null = null;
    let loop: string | null = null;
    let mounted = false;
    try {
      fuse = new Deno.Command("nbdfuse", {
        args: ["-P", `${dir}/nbdfuse.pid`, fuseDir, server.uris[0]!],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      await waitFor(
        () => Deno.stat(`${dir}/nbdfuse.pid`).then(() => true, () => false),
        15_000,
        "nbdfuse to be ready",
      );
      const image = `${fuseDir}/nbd`;
      assert.equal((await Deno.stat(image)).size, 64 * 1024 * 1024);
      loop = (await mustRun("losetup", ["-f", "--show", image])).trim();
      await mustRun("mkfs.ext4", ["-q", "-F", "-E", "nodiscard", loop], { timeoutMs: 60_000 });
      await mustRun("mount", [loop, fsDir]);
      mounted = true;
      const files = new Map<string, Uint8Array>();
      await Deno.mkdir(`${fsDir}/dir`);
      for (
        const [name, size] of [["a.bin", 1 << 20], ["dir/b.bin", 3 << 20], ["c.txt", 100]] as const
      ) {
        const data = randomBytes(size);
        files.set(name, data);
        await Deno.writeFile(`${fsDir}/${name}`, data);
      }
      await mustRun("sync", []);
      await mustRun("umount", [fsDir]);
      mounted = false;
      const fsck = await run("fsck.ext4", ["-fn", loop], { timeoutMs: 60_000 });
      assert.equal(fsck.code, 0, `fsck found problems:\n${fsck.stdout}${fsck.stderr}`);
      await mustRun("mount", [loop, fsDir]);
      mounted = true;
      for (const [name, data] of files) {
        const back = await Deno.readFile(`${fsDir}/${name}`);
        assert.ok(Buffer.compare(back, data) === 0, `${name} differs after remount`);
      }
    } finally {
      if (mounted) await run("umount", [fsDir]);
      if (loop) await run("losetup", ["-d", loop]);
      if (fuse) {
        await run("fusermount3", ["-u", fuseDir]);
        const killer = setTimeout(() => fuse!.kill("SIGKILL"), 10_000);
        await fuse.status;
        clearTimeout(killer);
        await fuse.stderr.cancel().catch(() => {});
      }
      const stopped = await server.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      assert.equal(stopped.code, 0, `dst export did not stop cleanly:\n${stopped.stderr}`);
    }
  },
});
