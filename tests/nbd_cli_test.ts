/**
 * `dst export` as a real process: it prints the client URIs once ready (TCP and Unix), serves
 * real clients on both, refuses bad command lines with exit code 2 and a clear message, and on
 * SIGTERM/SIGINT finishes what is in flight and exits 0, removing its Unix socket.
 */
import assert from "node:assert/strict";
import { mustRun, run, skipWithout, spawnExport } from "./support/nbd_harness.ts";
import { parseSize } from "../cli/export.ts";

const mainTs = new URL("../main.ts", import.meta.url).pathname;

async function dst(...args: string[]) {
  return await run(Deno.execPath(), ["run", "--unstable-net", "-A", mainTs, ...args]);
}

Deno.test("dst export: sizes parse like 64M and 1G", () => {
  assert.equal(parseSize("64M", "--memory"), 64 * 2 ** 20);
  assert.equal(parseSize("1G", "--memory"), 2 ** 30);
  assert.equal(parseSize("512KiB", "--memory"), 512 * 1024);
  assert.equal(parseSize("4K", "--memory"), 4096);
  assert.equal(parseSize("1048576", "--memory"), 2 ** 20, "a bare number of bytes, 1 MiB or more");
  assert.throws(() => parseSize("4096", "--memory"), /did you mean 4096M\?/);
  assert.throws(() => parseSize("12Q", "--memory"), /not a size/);
  assert.throws(() => parseSize("0", "--memory"), /positive/);
});

Deno.test("dst export: bad command lines exit 2 with a clear message", async () => {
  const cases: [string[], RegExp][] = [
    [["export", "--memory", "16M"], /--listen URL is required/],
    [["export", "--listen", "tcp://127.0.0.1:0"], /exactly one of --memory/],
    [["export", "--listen", "tcp://127.0.0.1:0", "--memory", "lots"], /not a size/],
    [
      ["export", "--listen", "http://x:1", "--memory", "1M"],
      /tcp:\/\/HOST:PORT or unix:\/\/\/PATH/,
    ],
    [
      ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "1M", "--frobnicate"],
      /unknown option --frobnicate/,
    ],
    [
      ["export", "--listen", "tcp://127.0.0.1:0", "--remote", "tcp://h:1", "--size", "1M"],
      /--size goes with --file/,
    ],
    [
      ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "1M", "--secret-file", "s"],
      /go with --remote/,
    ],
    [
      ["export", "--listen", "tcp://127.0.0.1:0", "--memory", "1M", "--size", "2M"],
      /--size goes with --file/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await dst(...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const help = await dst("export", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: dst export --listen URL/);
});

Deno.test({
  name: "dst export: prints URIs, serves TCP and Unix clients, SIGTERM exits 0",
  ignore: skipWithout("nbdinfo", "qemu-io"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-cli-" });
    const socket = `${dir}/export.sock`;
    const p = await spawnExport([
      "--listen",
      "tcp://127.0.0.1:0",
      "--listen",
      `unix://${socket}`,
      "--name",
      "disk",
      "--memory",
      "32M",
    ], 2);
    let stopped = false;
    try {
      const [tcp, unix] = p.uris;
      assert.match(tcp!, /^nbd:\/\/127\.0\.0\.1:\d+\/disk$/);
      assert.equal(unix, `nbd+unix:///disk?socket=${socket}`);
      const info = JSON.parse(await mustRun("nbdinfo", ["--json", tcp!]));
      assert.equal(info.exports[0]["export-size"], 32 * 2 ** 20);
      await mustRun("qemu-io", ["-f", "raw", "-c", "write -P 0x42 0 1M", unix!]);
      await mustRun("qemu-io", ["-f", "raw", "-c", "read -P 0x42 0 1M", tcp!]);
      const { code, stderr } = await p.stop("SIGTERM");
      stopped = true;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /shutting down/);
      await assert.rejects(() => Deno.lstat(socket), Deno.errors.NotFound, "socket removed");
    } finally {
      if (!stopped) await p.stop("SIGKILL");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "dst export --file: creates the media, data survives a restart, size is checked",
  ignore: skipWithout("qemu-io", "nbdinfo"),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "dst-cli-file-" });
    const path = `${dir}/disk.dst`;
    try {
      const missing = await dst("export", "--listen", "tcp://127.0.0.1:0", "--file", path);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /give --size SIZE to create it/);

      const first = await spawnExport([
        "--listen",
        "tcp://127.0.0.1:0",
        "--file",
        path,
        "--size",
        "16M",
      ]);
      try {
        const info = JSON.parse(await mustRun("nbdinfo", ["--json", first.uris[0]!]));
        assert.equal(info.exports[0]["export-size"], 16 * 2 ** 20);
        await mustRun("qemu-io", [
          "-f",
          "raw",
          "-c",
          "write -P 0x5e 1M 1M",
          "-c",
          "flush",
          first.uris[0]!,
        ]);
      } finally {
        assert.equal((await first.stop()).code, 0);
      }
      const second = await spawnExport([
        "--listen",
        "tcp://127.0.0.1:0",
        "--file",
        path,
        "--read-only",
      ]);
      try {
        await mustRun("qemu-io", [
          "-f",
          "raw",
          "-r",
          "-c",
          "read -P 0x5e 1M 1M",
          "-c",
          "read -P 0 0 1M",
          second.uris[0]!,
        ]);
        assert.equal((await run("nbdinfo", ["--is", "read-only", second.uris[0]!])).code, 0);
      } finally {
        assert.equal((await second.stop()).code, 0);
      }
      const wrongSize = await dst(
        "export",
        "--listen",
        "tcp://127.0.0.1:0",
        "--file",
        path,
        "--size",
        "32M",
      );
      assert.equal(wrongSize.code, 1, wrongSize.stderr);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "dst export: SIGINT while a client is connected still exits 0",
  ignore: skipWithout("nbdinfo"),
  async fn() {
    const p = await spawnExport(["--listen", "tcp://127.0.0.1:0", "--memory", "16M"]);
    const port = Number(/:(\d+)\//.exec(p.uris[0]!)![1]);
    const idle = await Deno.connect({ hostname: "127.0.0.1", port }); // sits in the handshake
    try {
      await mustRun("nbdinfo", [p.uris[0]!]);
      const { code, stderr } = await p.stop("SIGINT");
      assert.equal(code, 0, stderr);
    } finally {
      idle.close();
    }
  },
});
