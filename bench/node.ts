/**
 * Remote node benchmark: throughput of a RemoteNode proxy talking to a node server over TCP, Unix
 * and QUIC, for 1 MiB and 4 KiB requests at 32 in flight (writes, then reads of what was written),
 * beside the local memory and file devices called directly in the same run. Prints MB/s and IOPS
 * with each remote row's ratio to the local device it serves.
 *
 *   deno task bench:node [--seconds=0.75] [--only=memory,tcp] [--child]
 *
 * By default the node server and the proxy share this process (one JS thread does both ends);
 * --child runs each node as a `dst node` child process instead (two processes, two cores).
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { guard } from "../actors/block/guard.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { RemoteNode } from "../actors/node/proxy.ts";
import { serveNode } from "../actors/node/server.ts";
import { makeTestCerts, type TestCerts } from "../tests/support/certs.ts";

const args = new Map(
  Deno.args.filter((a) => a.startsWith("--")).map((a) => {
    const [k, v = ""] = a.slice(2).split("=");
    return [k!, v] as const;
  }),
);
const seconds = Number(args.get("seconds") ?? "0.75");
const only = args.get("only")?.split(",");
const child = args.has("child");
const DEPTH = 32;
const KIB4 = 4096;
const MIB = 1 << 20;
/** The region the requests land in (random aligned offsets); small enough to stay in memory. */
const REGION = 128 * MIB;
const mainTs = new URL("../main.ts", import.meta.url).pathname;

interface Result {
  /** Completed requests per second. */
  readonly iops: number;
  readonly mbps: number;
}

interface Row {
  readonly name: string;
  /** The local row this one is compared with ("" for the local rows themselves). */
  readonly reference: string;
  readonly w1m: Result;
  readonly r1m: Result;
  readonly w4k: Result;
  readonly r4k: Result;
}

/** A device to measure and how to let it go. */
interface Target {
  readonly device: BlockDevice;
  close(): Promise<void>;
}

/** Keeps `DEPTH` requests of `size` in flight for about `ms`; each worker owns one buffer. */
async function drive(
  device: BlockDevice,
  op: "read" | "write",
  size: number,
  ms: number,
): Promise<Result> {
  const slots = REGION / size;
  let done = 0;
  let rng = 0x9e3779b9;
  const start = performance.now();
  const deadline = start + ms;
  const worker = async (w: number) => {
    const buf = new Uint8Array(size).fill(w + 1);
    while (performance.now() < deadline) {
      rng ^= rng << 13;
      rng ^= rng >>> 17;
      rng ^= rng << 5;
      const offset = ((rng >>> 0) % slots) * size;
      if (op === "write") await device.write(offset, buf, false);
      else await device.read(offset, size, buf);
      done++;
    }
  };
  await Promise.all(Array.from({ length: DEPTH }, (_, w) => worker(w)));
  const took = (performance.now() - start) / 1000;
  return { iops: done / took, mbps: done * size / took / 1e6 };
}

async function measure(name: string, reference: string, target: Target): Promise<Row> {
  const ms = seconds * 1000;
  try {
    const { device } = target;
    await drive(device, "write", MIB, 100); // warm up (and JIT) before timing
    const w1m = await drive(device, "write", MIB, ms);
    const r1m = await drive(device, "read", MIB, ms);
    const w4k = await drive(device, "write", KIB4, ms);
    const r4k = await drive(device, "read", KIB4, ms);
    return { name, reference, w1m, r1m, w4k, r4k };
  } finally {
    await target.close();
  }
}

let certs: TestCerts | undefined;
let certDir: string | undefined;

/** A node serving `local` on `listen`, in this process or as a `dst node` child. */
async function remote(
  listen: string,
  local: () => Promise<Target>,
  dataArg: string,
): Promise<Target> {
  const quic = listen.startsWith("quic:");
  if (quic && certs === undefined) {
    certs = await makeTestCerts();
    certDir = await Deno.makeTempDir({ prefix: "dst-bench-certs-" });
    await Deno.writeTextFile(`${certDir}/cert.pem`, certs.cert);
    await Deno.writeTextFile(`${certDir}/key.pem`, certs.key);
  }
  const tls = certs === undefined
    ? {}
    : { tls: { cert: certs.cert, key: certs.key, caCerts: [certs.caCert] } };
  if (!child) {
    const served = await local();
    const server = await serveNode(listen, served.device, { node: "bench-node", ...tls });
    const proxy = await RemoteNode.connect(server.url, { node: "bench-proxy", ...tls });
    return {
      device: proxy,
      async close() {
        await proxy.close();
        await server.close();
        await served.close();
      },
    };
  }
  const tlsArgs = quic ? ["--cert", `${certDir}/cert.pem`, "--key", `${certDir}/key.pem`] : [];
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "-A", mainTs, "node", "--listen", listen, ...dataArg.split(" ")]
      .concat(tlsArgs),
    env: { DST_SECRET: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`dst node ${listen} exited before it was ready`);
    out += value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  const proxy = await RemoteNode.connect(out.trim(), { node: "bench-proxy", ...tls });
  return {
    device: proxy,
    async close() {
      await proxy.close();
      proc.kill("SIGTERM");
      await proc.status;
      await drained;
    },
  };
}

const dir = await Deno.makeTempDir({ prefix: "dst-bench-node-" });
const memory = (): Promise<Target> => {
  const device = guard(new MemoryBlockDevice({ size: REGION }));
  return Promise.resolve({ device, close: () => device.close() });
};
let files = 0;
const file = async (): Promise<Target> => {
  const path = `${dir}/f${files++}.img`;
  const device = guard(await FileBlockDevice.create({ path, size: REGION }));
  return {
    device,
    async close() {
      await device.close();
      await Deno.remove(path);
    },
  };
};
const memArg = `--data memory: --size ${REGION}`;
const fileArg = () => `--data ${dir}/c${files++}.img --size ${REGION}`;

const plans: { name: string; reference: string; open: () => Promise<Target> }[] = [
  { name: "memory", reference: "", open: memory },
  { name: "file", reference: "", open: file },
  {
    name: "tcp → memory",
    reference: "memory",
    open: () => remote("tcp://127.0.0.1:0", memory, memArg),
  },
  {
    name: "unix → memory",
    reference: "memory",
    open: () => remote(`unix://${dir}/m.sock`, memory, memArg),
  },
  {
    name: "quic → memory",
    reference: "memory",
    open: () => remote("quic://127.0.0.1:0", memory, memArg),
  },
  {
    name: "unix → file",
    reference: "file",
    open: () => remote(`unix://${dir}/f.sock`, file, fileArg()),
  },
]; // deno-fmt-ignore

const rows: Row[] = [];
try {
  for (const plan of plans) {
    const key = plan.name.split(" ")[0]!;
    if (only !== undefined && !only.includes(key) && !only.includes(plan.name)) continue;
    const row = await measure(plan.name, plan.reference, await plan.open());
    rows.push(row);
    console.error(`measured ${plan.name}`);
  }
} finally {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  if (certDir !== undefined) await Deno.remove(certDir, { recursive: true }).catch(() => {});
}

const byName = new Map(rows.map((r) => [r.name, r]));
const cell = (row: Row, pick: (r: Row) => number, unit: string): string => {
  const value = pick(row);
  const text = unit === "MB/s" ? value.toFixed(0) : Math.round(value).toLocaleString("en-US");
  const ref = byName.get(row.reference);
  return ref === undefined ? text : `${text} (${((value / pick(ref)) * 100).toFixed(0)}%)`;
};
const header = ["device", "1M write MB/s", "1M read MB/s", "4K write IOPS", "4K read IOPS"];
const table = rows.map((row) => [
  row.name,
  cell(row, (r) => r.w1m.mbps, "MB/s"),
  cell(row, (r) => r.r1m.mbps, "MB/s"),
  cell(row, (r) => r.w4k.iops, "IOPS"),
  cell(row, (r) => r.r4k.iops, "IOPS"),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
const line = (cells: string[]) =>
  `| ${cells.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(" | ")} |`;
console.log(
  `remote node bench: depth ${DEPTH}, ${seconds}s per cell, ` +
    `node ${child ? "in a child process (dst node)" : "in this process"}; ` +
    "(x%) = share of the local device it serves",
);
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const row of table) console.log(line(row));
