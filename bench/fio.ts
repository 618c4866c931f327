/**
 * fio (nbd engine) as the benchmarks run it: one job, time-based, JSON parsed into IOPS, MB/s
 * and total-latency percentiles. Shared by `bench/nbd.ts` (against nbdkit) and `bench/storage.ts`
 * (storages against a single node).
 */

export interface Job {
  readonly name: string;
  readonly rw: string;
  readonly bs: string;
  readonly iodepth: number;
  readonly mix?: number;
  /** Compare latency (depth 1) rather than throughput. */
  readonly latency?: boolean;
}

/** One measured row. */
export interface Result {
  target: string;
  transport: string;
  row: string;
  iops: number;
  mbps: number;
  p50us: number;
  p99us: number;
  seconds?: number;
  /** Requests fio completed (for CPU per request). */
  ios?: number;
  /** Server CPU microseconds per request, when measured. */
  cpuUsPerRequest?: number;
}

/** Waits until an NBD server answers at `uri`. */
export async function waitReady(uri: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const r = await new Deno.Command("nbdinfo", {
      args: ["--size", uri],
      stdout: "null",
      stderr: "null",
    })
      .output();
    if (r.success) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server at ${uri} never became ready`);
}

/** Runs `job` against `uri` for `seconds` over the first `size` bytes. */
export async function fio(
  uri: string,
  job: Job,
  seconds: number,
  size: number,
): Promise<Omit<Result, "target" | "transport">> {
  const args = [
    "--name=bench",
    "--ioengine=nbd",
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    `--size=${size}`,
    "--time_based",
    `--runtime=${seconds}`,
    "--ramp_time=0.5",
    "--norandommap",
    "--randrepeat=0",
    "--lat_percentiles=1",
    "--output-format=json",
  ];
  if (job.mix !== undefined) args.push(`--rwmixread=${job.mix}`);
  const out = await new Deno.Command("fio", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`fio failed: ${new TextDecoder().decode(out.stderr)}`);
  const j = JSON.parse(text.slice(text.indexOf("{"))).jobs[0];
  const iops = j.read.iops + j.write.iops;
  const mbps = (j.read.bw_bytes + j.write.bw_bytes) / 1e6;
  const side = j.read.iops > 0 ? j.read : j.write;
  // Total latency (submission to completion): what a caller waits for.
  const pct = side.lat_ns?.percentile ?? side.clat_ns.percentile ?? {};
  return {
    row: job.name,
    ios: (j.read.total_ios ?? 0) + (j.write.total_ios ?? 0),
    iops,
    mbps,
    p50us: (pct["50.000000"] ?? 0) / 1000,
    p99us: (pct["99.000000"] ?? 0) / 1000,
  };
}
