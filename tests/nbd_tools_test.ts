/**
 * The NBD server against real clients: nbdinfo (including --list, --map and --can for every
 * capability), nbdcopy of a random image in and out, qemu-io patterns and qemu-img compare, over
 * TCP and Unix sockets. Each test skips only when its tool is missing outside CI.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { mustRun, randomBytes, run, skipWithout, startServer } from "./support/nbd_harness.ts";

const MiB = 1024 * 1024;

Deno.test({
  name: "nbdinfo: export details, --list, --map and --can for each capability",
  ignore: skipWithout("nbdinfo", "qemu-io"),
  async fn() {
    const rw = await startServer({ size: 32 * MiB });
    const ro = await startServer({ size: 16 * MiB, readOnly: true });
    try {
      const json = JSON.parse(await mustRun("nbdinfo", ["--json", rw.uri]));
      const e = json.exports[0];
      assert.equal(e["export-name"], "dst");
      assert.equal(e["export-size"], 32 * MiB);
      assert.equal(e.is_read_only, false);
      assert.equal(e.block_size_minimum, 1);
      assert.equal(e.block_size_preferred, 4096);
      assert.equal(e.block_size_maximum, 64 * MiB, "requests up to 64 MiB, as nbdkit takes");
      assert.ok(e.contexts.includes("base:allocation"));
      assert.equal(json.protocol, "newstyle-fixed");

      const unix = JSON.parse(await mustRun("nbdinfo", ["--json", rw.unixUri]));
      assert.equal(unix.exports[0]["export-size"], 32 * MiB);

      const list = await mustRun("nbdinfo", ["--list", rw.uri.replace(/\/dst$/, "")]);
      assert.match(list, /export="dst"/);
      assert.match(list, /description: test export/);

      await mustRun("qemu-io", ["-f", "raw", "-c", "write -P 0x33 1M 2M", rw.uri]);
      const map = await mustRun("nbdinfo", ["--map", rw.uri]);
      const rows = map.trim().split("\n").map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
      const total = rows.reduce((n, r) => n + r[1]!, 0);
      assert.equal(total, 32 * MiB, `map covers the export:\n${map}`);
      assert.ok(rows.some((r) => r[2] === 3), "holes reported");

      const caps = [
        "cache",
        "df",
        "fast-zero",
        "flush",
        "fua",
        "multi-conn",
        "read",
        "trim",
        "write",
        "zero",
      ];
      for (const cap of caps) {
        const r = await run("nbdinfo", ["--can", cap, rw.uri]);
        assert.equal(r.code, 0, `rw can ${cap}: ${r.stderr}`);
      }
      for (const cap of ["write", "trim", "zero", "fua", "fast-zero"]) {
        const r = await run("nbdinfo", ["--can", cap, ro.uri]);
        assert.equal(r.code, 2, `read-only export cannot ${cap}`);
      }
      assert.equal((await run("nbdinfo", ["--is", "read-only", ro.uri])).code, 0);
      assert.equal((await run("nbdinfo", ["--is", "read-only", rw.uri])).code, 2);
      assert.equal((await run("nbdinfo", ["--is", "rotational", rw.uri])).code, 2);
    } finally {
      await rw.close();
      await ro.close();
    }
  },
});

Deno.test({
  name: "nbdcopy: a random image in and out, byte for byte, over TCP and Unix",
  ignore: skipWithout("nbdcopy"),
  async fn() {
    const s = await startServer({ size: 48 * MiB });
    try {
      const image = randomBytes(48 * MiB);
      // A hole in the middle, so sparse copying is exercised too.
      image.fill(0, 16 * MiB, 24 * MiB);
      const src = `${s.dir}/in.img`;
      const dst = `${s.dir}/out.img`;
      await Deno.writeFile(src, image);
      await mustRun("nbdcopy", ["--connections=2", src, s.uri], { timeoutMs: 60_000 });
      await mustRun("nbdcopy", [s.unixUri, dst], { timeoutMs: 60_000 });
      const back = await Deno.readFile(dst);
      assert.equal(back.length, image.length);
      assert.ok(Buffer.compare(back, image) === 0, "image differs after the round trip");
      await mustRun("qemu-img", ["compare", "-f", "raw", "-F", "raw", src, s.uri]);
    } finally {
      await s.close();
    }
  },
});

Deno.test({
  name: "qemu-io patterns (write -P, read -P, write -z, discard, flush, aio) and qemu-img compare",
  ignore: skipWithout("qemu-io", "qemu-img"),
  async fn() {
    const s = await startServer({ size: 16 * MiB });
    try {
      const io = (...commands: string[]) =>
        mustRun("qemu-io", ["-f", "raw", ...commands.flatMap((c) => ["-c", c]), s.uri]);
      const out = await io(
        "write -P 0xab 0 1M",
        "write -P 0xcd 1M 512k",
        "write -z 2M 1M",
        "aio_write -P 0x11 4M 64k",
        "aio_write -P 0x22 5M 64k",
        "aio_flush",
        "flush",
        "discard 8M 1M",
      );
      assert.doesNotMatch(out, /error|fail/i, out);
      const check = await io(
        "read -P 0xab 0 1M",
        "read -P 0xcd 1M 512k",
        "read -P 0 2M 1M",
        "aio_read -P 0x11 4M 64k",
        "aio_read -P 0x22 5M 64k",
        "aio_flush",
      );
      assert.doesNotMatch(check, /Pattern verification failed|error|fail/i, check);
      const wrong = await run("qemu-io", ["-f", "raw", "-c", "read -P 0x99 0 4k", s.uri]);
      assert.match(
        wrong.stdout + wrong.stderr,
        /Pattern verification failed/,
        "a wrong pattern is caught",
      );

      // Build the same image locally and compare the whole export with qemu-img.
      const local = new Uint8Array(16 * MiB);
      local.fill(0xab, 0, MiB);
      local.fill(0xcd, MiB, MiB + 512 * 1024);
      local.fill(0x11, 4 * MiB, 4 * MiB + 65536);
      local.fill(0x22, 5 * MiB, 5 * MiB + 65536);
      await Deno.writeFile(`${s.dir}/expect.img`, local);
      await mustRun("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${s.dir}/expect.img`,
        s.uri,
      ]);
      local[3] = 0;
      await Deno.writeFile(`${s.dir}/expect.img`, local);
      const differs = await run("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        `${s.dir}/expect.img`,
        s.uri,
      ]);
      assert.equal(differs.code, 1, "qemu-img compare notices a one-byte difference");
    } finally {
      await s.close();
    }
  },
});
