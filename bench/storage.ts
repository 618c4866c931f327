/**
 * `deno task bench:storage`: what composing costs. fio (nbd engine) against a single local node
 * (`dst export --memory`), one remote node behind `dst serve`, a 2-leg mirror of `dst node`
 * processes over TCP and over Unix sockets, a linear of two remote nodes, and a parity (RAID 5)
 * of three remote nodes, healthy and with one leg's node killed (degraded: its units rebuilt
 * from the others), all measured in the same run. Prints MB/s and the ratio to the single node
 * per row, and the parity aims (full-stripe 1M writes against one remote node, degraded 1M
 * reads against healthy ones); writes JSON to bench/out/. Not a test.
 *
 *   deno task bench:storage [--quick] [--runtime SECONDS] [--read-policy round-robin|nearest]
 *                           [--only TARGET-SUBSTRING]
 */
import { benchArgs, numberFlag } from "./args.ts";
import { type DstProcess, spawnDst } from "../tests/support/dst_process.ts";
import { fio, type Job, type Result } from "./fio.ts";

const USAGE = "usage: deno task bench:storage [--quick] [--runtime SECONDS] " +
  "[--read-policy round-robin|nearest] [--only TARGET-SUBSTRING]";
const values = benchArgs(USAGE, {
  quick: { type: "boolean" },
  runtime: { type: "string" },
  "read-policy": { type: "string" },
  only: { type: "string" },
});
const quick = values.quick ?? false;
const runtime = numberFlag(values.runtime, "--runtime", quick ? 2 : 4, USAGE);
const MiB = 1024 * 1024;
const size = (quick ? 256 : 1024) * MiB;
const root = new URL("..", import.meta.url).pathname;

const jobs: Job[] = [
  { name: "1M write qd8", rw: "write", bs: "1m", iodepth: 8 },
  { name: "1M read qd8", rw: "read", bs: "1m", iodepth: 8 },
  { name: "4k randwrite qd32", rw: "randwrite", bs: "4k", iodepth: 32 },
  { name: "4k randread qd32", rw: "randread", bs: "4k", iodepth: 32 },
];

type Target =
  | "single node"
  | "remote1 tcp"
  | "mirror2 tcp"
  | "mirror2 unix"
  | "linear2 tcp"
  | "parity3 tcp"
  | "parity3 degraded";
const targets: Target[] = [
  "single node",
  "remote1 tcp",
  "mirror2 tcp",
  "mirror2 unix",
  "linear2 tcp",
  "parity3 tcp",
  "parity3 degraded",
];

/** The legs of a target and each leg's size (the device is `size` bytes). */
function legsOf(target: Target): { legs: number; legSize: number } {
  if (target.startsWith("remote1")) return { legs: 1, legSize: size };
  if (target.startsWith("mirror")) return { legs: 2, legSize: size };
  if (target.startsWith("parity")) return { legs: 3, legSize: size / 2 };
  return { legs: 2, legSize: size / 2 };
}

/** Starts a target; resolves its NBD URI and the processes to stop. */
async function start(target: Target, dir: string): Promise<{ uri: string; procs: DstProcess[] }> {
  const nbd = `unix://${dir}/nbd.sock`;
  const ready = { ready: /^nbd/ };
  if (target === "single node") {
    const p = await spawnDst(["export", "--listen", nbd, "--memory", String(size)], ready);
    return { uri: p.lines.find((l) => l.startsWith("nbd"))!, procs: [p] };
  }
  const medium = target.endsWith("unix") ? "unix" : "tcp";
  const { legs, legSize } = legsOf(target);
  const procs: DstProcess[] = [];
  try {
    for (let i = 0; i < legs; i++) {
      // A node prints the URL it listens on (with the real port), and is ready then.
      const listen = medium === "unix" ? `unix://${dir}/leg${i}.sock` : "tcp://127.0.0.1:0";
      const args = ["--data", "memory:", "--size", String(legSize), "--id", `leg${i}`];
      procs.push(await spawnDst(["node", "--listen", listen, ...args]));
    }
    const names = procs.map((_, i) => `leg${i}`);
    const root = target.startsWith("remote1")
      ? undefined
      : target.startsWith("mirror")
      ? { kind: "mirror", legs: names, readPolicy: values["read-policy"] ?? "round-robin" }
      : target.startsWith("parity")
      ? { kind: "parity", legs: names }
      : { kind: "linear", children: names };
    const remote = (i: number) => ({ kind: "remote", url: procs[i]!.lines[0]!.trim() });
    // One remote node is the storage itself (named s: the serve's id is not its node's).
    const topology = {
      storage: "s",
      nodes: root === undefined
        ? { s: remote(0) }
        : { s: root, ...Object.fromEntries(procs.map((_, i) => [`leg${i}`, remote(i)])) },
      export: { listen: [nbd] },
    };
    await Deno.writeTextFile(`${dir}/topology.json`, JSON.stringify(topology));
    const serve = await spawnDst(["serve", "--config", `${dir}/topology.json`], ready);
    procs.push(serve);
    return { uri: serve.lines.find((l) => l.startsWith("nbd"))!, procs };
  } catch (error) {
    await stopAll(procs);
    throw error;
  }
}

async function stopAll(procs: readonly DstProcess[]): Promise<void> {
  for (const p of [...procs].reverse()) await p.stop();
}

async function main(): Promise<void> {
  const results: Result[] = [];
  for (const target of targets) {
    if (values.only !== undefined && target !== "single node" && !target.includes(values.only)) {
      continue;
    }
    const dir = await Deno.makeTempDir({ prefix: "dst-bench-storage-" });
    const { uri, procs } = await start(target, dir);
    try {
      // Warm-up and fill, so reads read written data and the JIT has compiled the hot path.
      await fio(uri, { name: "fill", rw: "write", bs: "1m", iodepth: 8 }, 1, size);
      if (target === "parity3 degraded") {
        // One leg's node dies: the parity leaves it out at its first failed request.
        await procs[2]!.stop("SIGKILL");
      }
      for (const job of jobs) {
        const r = await fio(uri, job, runtime, size);
        results.push({ target, transport: target.split(" ")[1] ?? "", ...r });
        console.error(`${target.padEnd(13)} ${job.name.padEnd(18)} ${r.mbps.toFixed(0)} MB/s`);
      }
    } finally {
      await stopAll(procs);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
  const base = (row: string) => results.find((r) => r.target === "single node" && r.row === row)!;
  const lines = [
    "| target | row | MB/s | IOPS | p50/p99 us | vs single node |",
    "| --- | --- | ---: | ---: | ---: | ---: |",
    ...results.map((r) =>
      `| ${r.target} | ${r.row} | ${r.mbps.toFixed(0)} | ${r.iops.toFixed(0)} | ${
        r.p50us.toFixed(0)
      }/${r.p99us.toFixed(0)} | ${(r.mbps / base(r.row).mbps).toFixed(2)} |`
    ),
  ];
  console.log(lines.join("\n"));
  const mbps = (target: Target, row: string) =>
    results.find((r) => r.target === target && r.row === row)?.mbps;
  const ratio = (a?: number, b?: number) => a && b ? (a / b).toFixed(2) : "n/a";
  console.log(
    `\nparity3 1M write / remote1 1M write: ${
      ratio(mbps("parity3 tcp", "1M write qd8"), mbps("remote1 tcp", "1M write qd8"))
    } (aim >= 0.6)\nparity3 degraded 1M read / parity3 1M read: ${
      ratio(mbps("parity3 degraded", "1M read qd8"), mbps("parity3 tcp", "1M read qd8"))
    } (aim >= 0.5)\nparity3 1M write / mirror2 tcp 1M write: ${
      ratio(mbps("parity3 tcp", "1M write qd8"), mbps("mirror2 tcp", "1M write qd8"))
    }`,
  );
  const outDir = `${root}bench/out`;
  await Deno.mkdir(outDir, { recursive: true });
  const file = `${outDir}/storage-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  await Deno.writeTextFile(file, JSON.stringify({ quick, runtime, size, results }, null, 2));
  console.log(`\nJSON: ${file}`);
}

await main();
