/**
 * `deno task bench`: the NBD server against nbdkit, measured in the same run on the same machine.
 * fio (nbd engine) runs 4 KiB random read/write at iodepth 1 and 32, 1 MiB sequential read/write
 * at iodepth 8 and 64 KiB 70/30 random read/write at iodepth 16, and nbdcopy moves an image in and
 * out, against `dst export --memory`, `dst export --file`, `nbdkit memory` and `nbdkit file`, over
 * TCP and Unix. Prints IOPS, MB/s, p50/p99 latency and dst/nbdkit per row; writes JSON to
 * bench/out/. Not a test: it reports, it does not judge.
 *
 *   deno task bench [--quick] [--transport tcp|unix|both] [--runtime SECONDS]
 */
import { parseArgs } from "node:util";
import { freePort } from "./free_port.ts";
import { fio as runFio, type Job, type Result, waitReady } from "./fio.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean" },
    transport: { type: "string" },
    runtime: { type: "string" },
    only: { type: "string" },
  },
});
const quick = values.quick ?? false;
const runtime = Number(values.runtime ?? (quick ? 1 : 3));
const transports = (values.transport ?? "both") === "both"
  ? ["tcp", "unix"] as const
  : [values.transport as "tcp" | "unix"];
const GiB = 1024 ** 3;
const size = quick ? GiB / 4 : GiB;
const root = new URL("..", import.meta.url).pathname;
const outDir = `${root}bench/out`;

const jobs: Job[] = [
  { name: "4k randread qd1", rw: "randread", bs: "4k", iodepth: 1, latency: true },
  { name: "4k randwrite qd1", rw: "randwrite", bs: "4k", iodepth: 1, latency: true },
  { name: "4k randread qd32", rw: "randread", bs: "4k", iodepth: 32 },
  { name: "4k randwrite qd32", rw: "randwrite", bs: "4k", iodepth: 32 },
  { name: "1M read qd8", rw: "read", bs: "1m", iodepth: 8 },
  { name: "1M write qd8", rw: "write", bs: "1m", iodepth: 8 },
  { name: "64k randrw 70/30 qd16", rw: "randrw", bs: "64k", iodepth: 16, mix: 70 },
];

type Target = "dst-memory" | "dst-file" | "nbdkit-memory" | "nbdkit-file";

interface Running {
  uri: string;
  stop(): Promise<void>;
}

async function start(target: Target, transport: "tcp" | "unix", dir: string): Promise<Running> {
  const port = freePort();
  const sock = `${dir}/${target}.sock`;
  let cmd: string;
  let args: string[];
  let uri: string;
  if (target.startsWith("dst")) {
    cmd = Deno.execPath();
    const listen = transport === "tcp" ? `tcp://127.0.0.1:${port}` : `unix://${sock}`;
    const source = target === "dst-memory"
      ? ["--memory", String(size)]
      : ["--file", `${dir}/dst.img`, "--size", String(size)];
    args = [
      "run",
      "--unstable-net",
      "-A",
      `${root}main.ts`,
      "export",
      "--listen",
      listen,
      ...source,
    ];
    uri = transport === "tcp" ? `nbd://127.0.0.1:${port}/dst` : `nbd+unix:///dst?socket=${sock}`;
  } else {
    cmd = "nbdkit";
    const where = transport === "tcp" ? ["-i", "127.0.0.1", "-p", String(port)] : ["-U", sock];
    const plugin = target === "nbdkit-memory"
      ? ["memory", String(size)]
      : ["file", `${dir}/nbdkit.img`];
    if (target === "nbdkit-file") {
      const f = await Deno.open(`${dir}/nbdkit.img`, { create: true, write: true });
      await f.truncate(size);
      f.close();
    }
    args = ["-f", "--exit-with-parent", ...where, ...plugin];
    uri = transport === "tcp" ? `nbd://127.0.0.1:${port}/` : `nbd+unix:///?socket=${sock}`;
  }
  const child = new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).spawn();
  await waitReady(uri);
  return {
    uri,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // gone
      }
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await child.status;
      clearTimeout(killer);
      await Deno.remove(`${dir}/dst.img`).catch(() => {});
      await Deno.remove(`${dir}/nbdkit.img`).catch(() => {});
    },
  };
}

function fio(uri: string, job: Job, seconds = runtime) {
  return runFio(uri, job, seconds, size);
}

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
  const tin = await time([image, uri]);
  const tout = await time([uri, "null:"]);
  return [
    {
      row: `nbdcopy in ${size / GiB}G`,
      iops: 0,
      mbps: size / tin / 1e6,
      p50us: 0,
      p99us: 0,
      seconds: tin,
    },
    {
      row: `nbdcopy out ${size / GiB}G`,
      iops: 0,
      mbps: size / tout / 1e6,
      p50us: 0,
      p99us: 0,
      seconds: tout,
    },
  ];
}

async function main(): Promise<void> {
  for (const tool of ["fio", "nbdkit", "nbdcopy", "nbdinfo"]) {
    const ok = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
      .output();
    if (!ok.success) throw new Error(`${tool} is needed for the benchmark`);
  }
  const dir = await Deno.makeTempDir({ prefix: "dst-bench-" });
  const image = `${dir}/image.raw`;
  const results: Result[] = [];
  try {
    // A random image for nbdcopy; written once, so every target copies the same bytes.
    await new Deno.Command("sh", {
      args: ["-c", `head -c ${size} /dev/urandom > ${image}`],
    }).output();
    const hasFile = await Deno.stat(`${root}actors/block/file.ts`).then(() => true, () => false);
    const targets: Target[] = [
      "dst-memory",
      "nbdkit-memory",
      ...(hasFile ? ["dst-file", "nbdkit-file"] as Target[] : []),
    ];
    for (const transport of transports) {
      for (const target of targets) {
        if (values.only && !target.includes(values.only)) continue;
        const server = await start(target, transport, dir);
        try {
          // Warm-up, not recorded, the same for every server: dst's JIT compiles its hot path
          // and both servers allocate their memory before anything is timed.
          await fio(server.uri, { name: "warm-up", rw: "randrw", bs: "64k", iodepth: 16 }, 1);
          // nbdcopy next: it fills the export, so the read rows read real data.
          for (const r of await nbdcopy(server.uri, image)) {
            results.push({ target, transport, ...r });
          }
          for (const job of jobs) {
            const r = await fio(server.uri, job);
            results.push({ target, transport, ...r });
            console.error(
              `${transport} ${target.padEnd(14)} ${job.name.padEnd(22)} ${fmt(r.iops)} IOPS ${
                fmt(r.mbps)
              } MB/s p50 ${fmt(r.p50us)}us p99 ${fmt(r.p99us)}us`,
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
  report(results);
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

function report(results: Result[]): void {
  const find = (target: string, transport: string, row: string) =>
    results.find((r) => r.target === target && r.transport === transport && r.row === row);
  const lines = [
    "| transport | backend | row | dst IOPS | dst MB/s | dst p50/p99 us | nbdkit IOPS | nbdkit MB/s | nbdkit p50/p99 us | dst/nbdkit |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const transport of transports) {
    for (const backend of ["memory", "file"]) {
      const rows = [
        ...new Set(
          results.filter((r) => r.target === `dst-${backend}` && r.transport === transport).map((
            r,
          ) => r.row),
        ),
      ];
      for (const row of rows) {
        const d = find(`dst-${backend}`, transport, row)!;
        const k = find(`nbdkit-${backend}`, transport, row);
        const job = jobs.find((j) => j.name === row);
        // Latency rows compare p50 latency (dst/nbdkit: below 1 means dst is faster); others MB/s.
        const ratio = k === undefined
          ? "-"
          : job?.latency
          ? `lat ${(d.p50us / k.p50us).toFixed(2)}x`
          : (d.mbps / k.mbps).toFixed(2);
        lines.push(
          `| ${transport} | ${backend} | ${row} | ${d.iops ? fmt(d.iops) : "-"} | ${
            fmt(d.mbps)
          } | ${d.p50us ? `${fmt(d.p50us)}/${fmt(d.p99us)}` : "-"} | ${
            k?.iops ? fmt(k.iops) : "-"
          } | ${k ? fmt(k.mbps) : "-"} | ${
            k?.p50us ? `${fmt(k.p50us)}/${fmt(k.p99us)}` : "-"
          } | ${ratio} |`,
        );
      }
    }
  }
  console.log(lines.join("\n"));
}

await main();
