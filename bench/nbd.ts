/**
 * `deno task bench`: dst's NBD paths against nbdkit, measured in the same run on the same
 * machine. fio (nbd engine) runs 4 KiB random read/write at iodepth 1 and 32, 1 MiB sequential
 * read/write at iodepth 8 and 64 KiB 70/30 random read/write at iodepth 16, and nbdcopy moves an
 * image in and out, over TCP and Unix, against:
 * - local: `dst export --memory|--file` beside `nbdkit memory|file`;
 * - remote: `dst export --remote` (one hop to a `dst node`) and a 2-leg mirror of `dst node`s
 *   (`dst serve`) beside nbdkit's own one-hop chain (`nbdkit nbd` in front of `nbdkit memory`).
 * Prints IOPS, MB/s, p50/p99 latency, the servers' CPU per request and the ratios per row; writes
 * JSON to bench/out/. Not a test: it reports, it does not judge.
 *
 *   deno task bench [--quick] [--suite local|remote|all] [--transport tcp|unix|both]
 *                   [--runtime SECONDS] [--only TARGET-SUBSTRING]
 */
import { benchArgs, numberFlag } from "./args.ts";
import { totalCpu } from "./cpu.ts";
import { fio as runFio, type Job, type Result } from "./fio.ts";
import { type Comparison, report } from "./nbd_report.ts";
import { startTarget, type TargetName, type Transport } from "./targets.ts";

const USAGE = "usage: deno task bench [--quick] [--suite local|remote|all] " +
  "[--transport tcp|unix|both] [--runtime SECONDS] [--only TARGET-SUBSTRING]";
const values = benchArgs(USAGE, {
  quick: { type: "boolean" },
  suite: { type: "string" },
  transport: { type: "string" },
  runtime: { type: "string" },
  only: { type: "string" },
});
const quick = values.quick ?? false;
const runtime = numberFlag(values.runtime, "--runtime", quick ? 1 : 3, USAGE);
const transportFlag = values.transport ?? "both";
if (!["tcp", "unix", "both"].includes(transportFlag)) {
  console.error(`bench: --transport must be tcp, unix or both, got "${transportFlag}"\n${USAGE}`);
  Deno.exit(2);
}
const transports: Transport[] = transportFlag === "both"
  ? ["tcp", "unix"]
  : [transportFlag as Transport];
const GiB = 1024 ** 3;
const size = quick ? GiB / 4 : GiB;
const root = new URL("..", import.meta.url).pathname;
const outDir = `${root}bench/out`;

export const jobs: Job[] = [
  { name: "4k randread qd1", rw: "randread", bs: "4k", iodepth: 1, latency: true },
  { name: "4k randwrite qd1", rw: "randwrite", bs: "4k", iodepth: 1, latency: true },
  { name: "4k randread qd32", rw: "randread", bs: "4k", iodepth: 32 },
  { name: "4k randwrite qd32", rw: "randwrite", bs: "4k", iodepth: 32 },
  { name: "1M read qd8", rw: "read", bs: "1m", iodepth: 8 },
  { name: "1M write qd8", rw: "write", bs: "1m", iodepth: 8 },
  { name: "64k randrw 70/30 qd16", rw: "randrw", bs: "64k", iodepth: 16, mix: 70 },
];

const suites: Record<string, { targets: TargetName[]; comparisons: Comparison[] }> = {
  local: {
    targets: ["dst-memory", "nbdkit-memory", "dst-file", "nbdkit-file"],
    comparisons: [
      { label: "memory", ours: "dst-memory", reference: "nbdkit-memory" },
      { label: "file", ours: "dst-file", reference: "nbdkit-file" },
    ],
  },
  remote: {
    targets: ["nbdkit-chain", "dst-remote", "dst-mirror2"],
    comparisons: [
      { label: "1 hop", ours: "dst-remote", reference: "nbdkit-chain" },
      { label: "mirror2 vs chain", ours: "dst-mirror2", reference: "nbdkit-chain" },
      { label: "mirror2 vs 1 hop", ours: "dst-mirror2", reference: "dst-remote" },
    ],
  },
};

async function nbdcopy(
  uri: string,
  image: string,
): Promise<Omit<Result, "target" | "transport">[]> {
  const time = async (args: string[]) => {
    const t0 = performance.now();
    const out = await new Deno.Command("nbdcopy", { args, stdout: "null", stderr: "piped" })
      .output();
    if (!out.success) throw new Error(`nbdcopy failed: ${new TextDecoder().decode(out.stderr)}`);
    return (performance.now() - t0) / 1000;
  };
  const row = (what: string, seconds: number) => ({
    row: `nbdcopy ${what} ${size / GiB}G`,
    iops: 0,
    mbps: size / seconds / 1e6,
    p50us: 0,
    p99us: 0,
    seconds,
  });
  return [row("in", await time([image, uri])), row("out", await time([uri, "null:"]))];
}

async function main(): Promise<void> {
  for (const tool of ["fio", "nbdkit", "nbdcopy", "nbdinfo"]) {
    const ok = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
      .output();
    if (!ok.success) throw new Error(`${tool} is needed for the benchmark`);
  }
  const chosen = values.suite === undefined || values.suite === "all" ? Object.values(suites) : [
    suites[values.suite] ?? (() => {
      throw new Error(`--suite ${values.suite}: expected local, remote or all`);
    })(),
  ];
  const dir = await Deno.makeTempDir({ prefix: "dst-bench-" });
  const image = `${dir}/image.raw`;
  const results: Result[] = [];
  try {
    // A random image for nbdcopy; written once, so every target copies the same bytes.
    await new Deno.Command("sh", {
      args: ["-c", `head -c ${size} /dev/urandom > ${image}`],
    }).output();
    for (const transport of transports) {
      for (const target of chosen.flatMap((s) => s.targets)) {
        if (values.only && !target.includes(values.only)) continue;
        const server = await startTarget(target, transport, dir, size);
        try {
          // Warm-up, not recorded, the same for every server: dst's JIT compiles its hot path
          // and both servers allocate their memory before anything is timed.
          await runFio(
            server.uri,
            { name: "warm-up", rw: "randrw", bs: "64k", iodepth: 16 },
            1,
            size,
          );
          // nbdcopy next: it fills the export, so the read rows read real data.
          for (const r of await nbdcopy(server.uri, image)) {
            results.push({ target, transport, ...r });
          }
          for (const job of jobs) {
            const before = await totalCpu(server.pids);
            const r = await runFio(server.uri, job, runtime, size);
            const cpu = await totalCpu(server.pids) - before;
            const cpuUsPerRequest = r.ios ? (cpu * 1e6) / r.ios : undefined;
            results.push({
              target,
              transport,
              ...r,
              ...(cpuUsPerRequest === undefined ? {} : { cpuUsPerRequest }),
            });
            console.error(
              `${transport} ${target.padEnd(14)} ${job.name.padEnd(22)} ${fmt(r.iops)} IOPS ${
                fmt(r.mbps)
              } MB/s p50 ${fmt(r.p50us)}us p99 ${fmt(r.p99us)}us cpu ${
                cpuUsPerRequest === undefined ? "-" : fmt(cpuUsPerRequest)
              }us/req`,
            );
          }
        } finally {
          await server.stop();
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log(report(results, transports, chosen.flatMap((s) => s.comparisons), jobs));
  await Deno.mkdir(outDir, { recursive: true });
  const file = `${outDir}/nbd-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  await Deno.writeTextFile(
    file,
    JSON.stringify({ quick, runtime, size, date: new Date().toISOString(), results }, null, 2),
  );
  console.log(`\nJSON: ${file}`);
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n.toFixed(1);
}

if (import.meta.main) await main();
