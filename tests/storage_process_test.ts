/**
 * Storages of real processes: `dst serve` assembling mirrors over `dst node` processes, legs
 * killed with SIGKILL under a verifying write load through a real NBD client (nbdcopy), a tree
 * of storages across processes, bad topology files, and `dst start`, the README's main command.
 */
import assert from "node:assert/strict";
import { checkBlock, fillBlock } from "../drill/block_stamps.ts";
import { mustRun, randomBytes, skipWithout } from "./support/nbd_harness.ts";
import { type DstProcess, runDst, spawnDst } from "./support/dst_process.ts";

const MiB = 1024 * 1024;
const BLOCK = 4096;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-storage-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function startNode(dir: string, name: string, size = "32M"): Promise<DstProcess> {
  return spawnDst([
    "node",
    "--listen",
    `unix://${dir}/${name}.sock`,
    "--data",
    "memory:",
    "--size",
    size,
    "--id",
    name,
  ]);
}

async function startServe(dir: string, topology: unknown, extra: string[] = []) {
  const config = `${dir}/topology-${crypto.randomUUID()}.json`;
  await Deno.writeTextFile(config, JSON.stringify(topology));
  return await spawnDst(["serve", "--config", config, ...extra], {
    ready: /^(nbd|node|status)/,
    readyLines: extra.includes("--status") ? 2 : 1,
  });
}

/** A buffer of `bytes` in which every block names its offset, writer and `seq`. */
function stamped(bytes: number, seq: number): Uint8Array {
  const buf = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += BLOCK) fillBlock(buf.subarray(at, at + BLOCK), at, 1, seq);
  return buf;
}

async function readAll(uri: string, dir: string): Promise<Uint8Array> {
  const out = `${dir}/readback-${crypto.randomUUID()}.img`;
  await mustRun("nbdcopy", [uri, out]);
  const data = await Deno.readFile(out);
  await Deno.remove(out);
  return data;
}

/**
 * Writes the whole device `rounds` times with rising sequence numbers through nbdcopy, killing
 * `victim` with SIGKILL during round 1. Every nbdcopy must succeed, and afterwards every block
 * must read back with the last sequence: no acknowledged write lost, no client I/O failed.
 */
async function killLegUnderLoad(legs: number): Promise<void> {
  await withDir(async (dir) => {
    const names = Array.from({ length: legs }, (_, i) => `leg${i}`);
    const nodes = await Promise.all(names.map((n) => startNode(dir, n)));
    let serve: DstProcess | undefined;
    try {
      serve = await startServe(dir, {
        storage: "m",
        nodes: {
          m: { kind: "mirror", legs: names },
          ...Object.fromEntries(
            names.map((n) => [n, { kind: "remote", url: `unix://${dir}/${n}.sock` }]),
          ),
        },
        export: { listen: [`unix://${dir}/nbd.sock`] },
      });
      const uri = serve.lines.find((l) => l.startsWith("nbd"))!;
      const size = 32 * MiB;
      const rounds = 3;
      for (let seq = 0; seq < rounds; seq++) {
        const image = `${dir}/round${seq}.img`;
        await Deno.writeFile(image, stamped(size, seq));
        const copy = new Deno.Command("nbdcopy", { args: [image, uri], stderr: "piped" }).spawn();
        if (seq === 1) {
          await new Promise((r) => setTimeout(r, 30));
          await nodes[legs - 1]!.stop("SIGKILL");
        }
        const result = await copy.output();
        assert.equal(
          result.code,
          0,
          `nbdcopy round ${seq} failed: ${new TextDecoder().decode(result.stderr)}`,
        );
      }
      const data = await readAll(uri, dir);
      assert.equal(data.length, size);
      for (let at = 0; at < size; at += BLOCK) {
        const stamp = checkBlock(data.subarray(at, at + BLOCK), at);
        assert.deepEqual(stamp, { writer: 1, seq: rounds - 1 }, `block at ${at}`);
      }
    } finally {
      await serve?.stop();
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });
}

Deno.test({
  name: "storage: kill -9 a leg of a 2-leg mirror under nbdcopy load: no I/O fails, nothing lost",
  ignore: skipWithout("nbdcopy"),
  fn: () => killLegUnderLoad(2),
});

Deno.test({
  name: "storage: kill -9 a leg of a 3-leg mirror under nbdcopy load: no I/O fails, nothing lost",
  ignore: skipWithout("nbdcopy"),
  fn: () => killLegUnderLoad(3),
});

Deno.test({
  name: "storage: a mirror whose child is a linear storage served by another dst serve process",
  ignore: skipWithout("nbdcopy"),
  fn: () =>
    withDir(async (dir) => {
      const inner = await startServe(dir, {
        storage: "lin",
        nodes: {
          lin: { kind: "linear", children: ["x", "y"] },
          x: { kind: "memory", size: "24M" },
          y: { kind: "memory", size: "40M" },
        },
        node: { listen: `unix://${dir}/lin.sock` },
      });
      let outer: DstProcess | undefined;
      try {
        outer = await startServe(dir, {
          storage: "top",
          nodes: {
            top: { kind: "mirror", legs: ["near", "far"] },
            near: { kind: "memory", size: "64M" },
            far: { kind: "remote", url: `unix://${dir}/lin.sock` },
          },
          export: { listen: [`unix://${dir}/top.sock`] },
        }, ["--status", "127.0.0.1:0"]);
        const uri = outer.lines.find((l) => l.startsWith("nbd"))!;
        const status = outer.lines.find((l) => l.startsWith("status"))!.split(" ")[1]!;
        const image = randomBytes(64 * MiB);
        await Deno.writeFile(`${dir}/in.img`, image);
        await mustRun("nbdcopy", [`${dir}/in.img`, uri]);
        assert.deepEqual(await readAll(uri, dir), image);
        // The remote leg keeps no media of its own: it was copied in full before it was read.
        let tree = (await (await fetch(`${status}api/tree`)).json()).tree;
        for (let i = 0; i < 200 && tree.state !== "in-sync"; i++) {
          await new Promise((r) => setTimeout(r, 50));
          tree = (await (await fetch(`${status}api/tree`)).json()).tree;
        }
        assert.equal(tree.kind, "mirror");
        assert.equal(tree.state, "in-sync");
        assert.deepEqual(tree.children.map((c: { kind: string }) => c.kind), ["memory", "remote"]);
        assert.equal(tree.children[1].size, 64 * MiB, "remote size discovered at assembly");
      } finally {
        await outer?.stop();
        await inner.stop();
      }
    }),
});

Deno.test("storage: a bad topology file gets clear errors and starts nothing", async () => {
  await withDir(async (dir) => {
    const config = `${dir}/bad.json`;
    await Deno.writeTextFile(
      config,
      JSON.stringify({
        storage: "m",
        nodes: { m: { kind: "mirror", legs: ["a", "ghost"] }, a: { kind: "memory", size: "1Q" } },
        export: { listen: [`unix://${dir}/nbd.sock`] },
      }),
    );
    const out = await runDst(["serve", "--config", config]);
    const stderr = out.stderr;
    assert.equal(out.code, 1, stderr);
    assert.match(stderr, /nodes\.a\.size: "1Q" is not a size/);
    await Deno.writeTextFile(config, "{ not json");
    const again = await runDst(["serve", "--config", config]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not valid JSON/);
    await assert.rejects(
      Deno.lstat(`${dir}/nbd.sock`),
      "nothing may listen after a refused topology",
    );
  });
});

Deno.test({
  name: "dst start: the embedded default serves a 3-leg mirror, stops on SIGINT, reopens its data",
  ignore: skipWithout("nbdcopy", "nbdinfo"),
  fn: () =>
    withDir(async (dir) => {
      const args = [
        "start",
        "--data",
        `${dir}/data`,
        "--size",
        "16M",
        "--nbd",
        `unix://${dir}/nbd.sock`,
        "--status",
        "127.0.0.1:0",
      ];
      const image = randomBytes(16 * MiB);
      await Deno.writeFile(`${dir}/in.img`, image);
      let first: DstProcess | undefined = await spawnDst(args, { ready: /^Ctrl-C/ });
      try {
        const uri = first.lines.find((l) => l.startsWith("NBD:"))!.split(/\s+/)[1]!;
        const status = first.lines.find((l) => l.startsWith("status:"))!.split(/\s+/)[1]!;
        const info = await mustRun("nbdinfo", ["--json", uri]);
        assert.equal(JSON.parse(info).exports[0]["export-size"], 16 * MiB);
        const tree = (await (await fetch(`${status}api/tree`)).json()).tree;
        assert.equal(tree.children.length, 3);
        await mustRun("nbdcopy", [`${dir}/in.img`, uri]);
        const { code } = await first.stop("SIGINT");
        first = undefined;
        assert.equal(code, 0);
        const second = await spawnDst(args, { ready: /^Ctrl-C/ });
        try {
          assert.deepEqual(await readAll(uri, dir), image);
        } finally {
          assert.equal((await second.stop("SIGINT")).code, 0);
        }
      } finally {
        await first?.stop();
      }
    }),
});

Deno.test({
  name: "dst export --remote: serves a dst node over NBD with the size learned from the node",
  ignore: skipWithout("nbdcopy", "nbdinfo"),
  fn: () =>
    withDir(async (dir) => {
      const node = await startNode(dir, "solo", "24M");
      let exporter: DstProcess | undefined;
      try {
        exporter = await spawnDst([
          "export",
          "--listen",
          `unix://${dir}/nbd.sock`,
          "--remote",
          `unix://${dir}/solo.sock`,
        ], { ready: /^nbd/ });
        const uri = exporter.lines.find((l) => l.startsWith("nbd"))!;
        const info = JSON.parse(await mustRun("nbdinfo", ["--json", uri]));
        assert.equal(info.exports[0]["export-size"], 24 * MiB);
        const image = randomBytes(24 * MiB);
        await Deno.writeFile(`${dir}/in.img`, image);
        await mustRun("nbdcopy", [`${dir}/in.img`, uri]);
        assert.deepEqual(await readAll(uri, dir), image);
      } finally {
        await exporter?.stop();
        await node.stop();
      }
    }),
});
