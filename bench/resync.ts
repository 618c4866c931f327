/**
 * Resync rate of a 1 GiB mirror leg on loopback: two `dst node` processes over TCP under a
 * `dst serve` mirror; the second leg's media is replaced by an empty file and resynced in full,
 * once with an idle client and once under a fio random-write load (nbd engine). Beside it, the
 * bare TCP throughput of the same machine in the same run (a plain Deno socket copy), so the
 * figure is a ratio, not a number that depends on the day.
 *
 *   deno task bench:resync [--size MIB] [--parallel N] [--chunk SIZE] [--unix]
 */
import { benchArgs, numberFlag } from "./args.ts";
import { spawnDst } from "../tests/support/dst_process.ts";
import { freePort } from "./free_port.ts";
import { fio } from "./fio.ts";

const MiB = 1024 * 1024;

const USAGE = "usage: deno task bench:resync [--size MIB] [--parallel N] [--chunk SIZE] [--unix]";
const values = benchArgs(USAGE, {
  size: { type: "string", default: "1024" },
  parallel: { type: "string" },
  chunk: { type: "string", default: "1M" },
  unix: { type: "boolean" },
});
const SIZE = numberFlag(values.size, "--size", 1024, USAGE) * MiB;

/** Bare loopback TCP: one connection, 1 MiB writes, `bytes` through; bytes per second. */
async function bareTcp(bytes: number): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const reader = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(MiB);
    let got = 0;
    while (got < bytes) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += n;
    }
    conn.close();
  })();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const out = new Uint8Array(MiB).fill(7);
  const t0 = performance.now();
  for (let sent = 0; sent < bytes; sent += out.length) {
    let done = 0;
    while (done < out.length) done += await conn.write(out.subarray(done));
  }
  await reader;
  const seconds = (performance.now() - t0) / 1000;
  conn.close();
  listener.close();
  return bytes / seconds;
}

const dir = await Deno.makeTempDir({ prefix: "dst-bench-resync-" });
const ports = { leg0: freePort(), leg1: freePort() };
/** Legs over TCP loopback; --unix puts them on Unix sockets (a TCP leg killed and restarted
 * is not reconnected yet: see the report). */
const LEG_URL = (name: "leg0" | "leg1") =>
  values.unix ? `unix://${dir}/${name}.sock` : `tcp://127.0.0.1:${ports[name]}`;
const node = (name: "leg0" | "leg1") =>
  spawnDst([
    "node",
    "--listen",
    `${LEG_URL(name)}`,
    "--data",
    `${dir}/${name}.img`,
    "--size",
    String(SIZE),
    "--id",
    name,
  ]);
const nodes = { leg0: await node("leg0"), leg1: await node("leg1") };
const config = `${dir}/topology.json`;
await Deno.writeTextFile(
  config,
  JSON.stringify({
    storage: "m",
    nodes: {
      m: {
        kind: "mirror",
        legs: ["leg0", "leg1"],
        chunkSize: values.chunk,
        ...(values.parallel === undefined ? {} : { resync: { parallel: Number(values.parallel) } }),
      },
      leg0: { kind: "remote", url: LEG_URL("leg0") },
      leg1: { kind: "remote", url: LEG_URL("leg1") },
    },
    export: { listen: ["tcp://127.0.0.1:0"] },
  }),
);
const serve = await spawnDst(["serve", "--config", config, "--status", "127.0.0.1:0"], {
  ready: /^(nbd|status )/,
  readyLines: 2,
});
const uri = serve.lines.find((l) => l.startsWith("nbd"))!;
const status = serve.lines.map((l) => l.match(/https?:\/\/\S+/)?.[0]).find((u) => u)!;

interface Leg {
  name: string;
  state: string;
  detail?: { resync?: { rateBytesPerSec: number }; copiedBytes?: number };
}
async function legs(): Promise<{ state: string; children: Leg[] }> {
  return (await (await fetch(`${status.replace(/\/$/, "")}/api/tree`)).json()).tree;
}
async function until(ok: (t: { state: string; children: Leg[] }) => boolean, ms: number) {
  const end = Date.now() + ms;
  for (;;) {
    const t = await legs();
    if (ok(t)) return t;
    if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(t)}`);
    if (Deno.env.get("BENCH_DEBUG")) console.error(t.state, t.children.map((l) => l.state));
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Replaces leg1's media and times its full resync; bytes per second and bytes copied. */
async function resyncOnce(): Promise<{ rate: number; copied: number; seconds: number }> {
  const before = (await legs()).children.find((l) => l.name === "leg1")?.detail?.copiedBytes ?? 0;
  await nodes.leg1.stop("SIGKILL");
  await Deno.remove(`${dir}/leg1.img`);
  await until((t) => t.state !== "in-sync", 10_000);
  nodes.leg1 = await node("leg1");
  // From the moment the node is up: the process start is not the resync's time.
  const t0 = performance.now();
  const t = await until((t) => t.state === "in-sync", 300_000);
  const seconds = (performance.now() - t0) / 1000;
  const copied = (t.children.find((l) => l.name === "leg1")?.detail?.copiedBytes ?? 0) - before;
  return { rate: copied / seconds, copied, seconds };
}

const fmt = (bps: number) => `${(bps / MiB).toFixed(0)} MiB/s`;
try {
  await until((t) => t.state === "in-sync", 300_000);
  // Leg data that differs from empty media: every chunk of the resync is really copied.
  const image = `${dir}/fill.img`;
  const f = await Deno.open(image, { write: true, create: true });
  const block = crypto.getRandomValues(new Uint8Array(65536));
  const mib = new Uint8Array(MiB);
  for (let at = 0; at < MiB; at += block.length) mib.set(block, at);
  for (let i = 0; i < SIZE / MiB; i++) {
    mib[0] = i & 0xff;
    mib[1] = i >> 8;
    await f.write(mib);
  }
  f.close();
  const copy = await new Deno.Command("nbdcopy", { args: [image, uri] }).output();
  if (!copy.success) throw new Error("nbdcopy fill failed");
  await until((t) => t.state === "in-sync", 300_000);

  console.error("filled; measuring");
  const tcp = await bareTcp(SIZE);
  const idle = await resyncOnce();
  console.error("idle resync done");
  // Under load: 4 KiB random writes at depth 8 for as long as the resync runs (bounded).
  const load = fio(uri, { name: "randwrite", rw: "randwrite", bs: "4k", iodepth: 8 }, 30, SIZE);
  await new Promise((r) => setTimeout(r, 1000));
  const busy = await resyncOnce();
  const client = await load;
  const tcpAfter = await bareTcp(SIZE);
  console.log(`resync of a ${SIZE / MiB} MiB leg on loopback (chunk ${values.chunk})`);
  console.log(`  bare TCP (one socket)      ${fmt(tcp)} before, ${fmt(tcpAfter)} after`);
  console.log(
    `  resync, idle client        ${fmt(idle.rate)} (${idle.seconds.toFixed(1)} s, ` +
      `${(idle.copied / MiB).toFixed(0)} MiB copied) = ${
        (100 * idle.rate / tcp).toFixed(0)
      }% of TCP`,
  );
  console.log(
    `  resync, fio randwrite 4k   ${fmt(busy.rate)} (${busy.seconds.toFixed(1)} s) = ` +
      `${(100 * busy.rate / tcp).toFixed(0)}% of TCP; client ${client.iops.toFixed(0)} IOPS, ` +
      `p99 ${client.p99us.toFixed(0)} µs`,
  );
} finally {
  await serve.stop();
  await Promise.all([nodes.leg0.stop(), nodes.leg1.stop()]);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
