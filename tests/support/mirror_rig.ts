/**
 * A mirror of real processes for integration tests: three file-backed `dst node` processes on
 * Unix sockets, `dst serve` mirroring them with status and control, and helpers to write
 * self-describing rounds through nbdcopy, watch the tree, run `dst ctl`, and read each leg's
 * media straight from its file afterwards.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { checkBlock, fillBlock } from "../../drill/block_stamps.ts";
import { type DstProcess, spawnDst } from "./dst_process.ts";
import { openExport } from "./nbd_raw_client.ts";

export const MiB = 1024 * 1024;
export const SIZE = 32 * MiB;
export const BLOCK = 4096;
/** Where the data area starts in a 32 MiB leg's file (after metadata and bitmap). */
export const DATA_OFFSET = MiB;
export const LEGS = ["leg0", "leg1", "leg2"];
export const TOKEN = "resync-test-token-0123456789abcdef";
export const mainTs = new URL("../../main.ts", import.meta.url).pathname;

export interface Rig {
  dir: string;
  storageId: string;
  nodes: Map<string, DstProcess>;
  serve: DstProcess | undefined;
  uri: string;
  /** The export's TCP port (for the raw client that records acknowledgements). */
  port: number;
  status: string;
}

export function startNode(rig: Rig, name: string): Promise<DstProcess> {
  return spawnDst([
    "node",
    "--listen",
    `unix://${rig.dir}/${name}.sock`,
    "--data",
    `${rig.dir}/${name}.img`,
    "--size",
    String(SIZE),
    "--id",
    name,
    "--storage-id",
    rig.storageId,
  ]);
}

/** Resync pace for the next `startServe` (slow enough to interrupt a resync mid-way). */
export const SLOW = { floor: "4M", ceiling: "8M" };

/** More for one `startServe`: flags, and how long to wait for each leg's node. */
export interface ServeExtras {
  readonly args?: readonly string[];
  readonly connectTimeoutMs?: number;
  /** The storage's mapping over the legs (default a mirror; parity: RAID 5 with 64K units). */
  readonly kind?: "mirror" | "parity";
}

/** Writes the rig's topology (a mirror of `legs`) and returns its path. */
export async function writeTopology(
  rig: Rig,
  pace?: typeof SLOW,
  legs = LEGS,
  extras: ServeExtras = {},
): Promise<string> {
  const config = `${rig.dir}/topology.json`;
  await Deno.writeTextFile(
    config,
    JSON.stringify({
      storage: "m",
      nodes: {
        m: {
          kind: extras.kind ?? "mirror",
          legs,
          chunkSize: "1M",
          ...(pace === undefined ? {} : { resync: pace }),
        },
        ...Object.fromEntries(legs.map((n) => [n, {
          kind: "remote",
          url: `unix://${rig.dir}/${n}.sock`,
          storageId: rig.storageId,
          ...(extras.connectTimeoutMs === undefined
            ? {}
            : { connectTimeoutMs: extras.connectTimeoutMs }),
        }])),
      },
      export: { listen: [`unix://${rig.dir}/nbd.sock`, "tcp://127.0.0.1:0"] },
    }),
  );
  return config;
}

/** The arguments of the rig's `dst serve`. */
export function serveArgs(rig: Rig, config: string, extras: ServeExtras = {}): string[] {
  const token = ["--status-token-file", `${rig.dir}/status.token`];
  return ["serve", "--config", config, "--status", "127.0.0.1:0", ...token, ...extras.args ?? []];
}

export async function startServe(
  rig: Rig,
  pace?: typeof SLOW,
  legs = LEGS,
  extras: ServeExtras = {},
): Promise<void> {
  const config = await writeTopology(rig, pace, legs, extras);
  rig.serve = await spawnDst(serveArgs(rig, config, extras), {
    ready: /^(nbd|status|http)/,
    readyLines: 3,
  });
  rig.uri = rig.serve.lines.find((l) => l.startsWith("nbd+unix"))!;
  rig.port = Number(rig.serve.lines.find((l) => l.startsWith("nbd://"))!.match(/:(\d+)/)![1]);
  rig.status = rig.serve.lines.map((l) => l.match(/https?:\/\/\S+/)?.[0]).find((u) => u)!;
}

export async function withRig(
  fn: (rig: Rig) => Promise<void>,
  extras: ServeExtras = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dst-resync-" });
  const storageId = Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const rig: Rig = {
    dir,
    storageId,
    nodes: new Map(),
    serve: undefined,
    uri: "",
    port: 0,
    status: "",
  };
  try {
    await Deno.writeTextFile(`${dir}/status.token`, `${TOKEN}\n`, { mode: 0o600 });
    for (const n of LEGS) rig.nodes.set(n, await startNode(rig, n));
    await startServe(rig, undefined, LEGS, extras);
    await fn(rig);
  } finally {
    await rig.serve?.stop();
    await Promise.all([...rig.nodes.values()].map((n) => n.stop()));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

export interface LegView {
  name: string;
  state: string;
  detail?: {
    copiedBytes?: number;
    resyncedBytes?: number;
    state?: string;
    reason?: string;
    resync?: { bytesDone: number; source: string };
  };
}

export async function tree(rig: Rig): Promise<{ state: string; children: LegView[] }> {
  const base = rig.status.replace(/\/$/, "");
  const res = await fetch(`${base}/api/tree`);
  const body = await res.json();
  return body.tree;
}

export async function waitInSync(rig: Rig, ms = 20_000): Promise<LegView[]> {
  const end = Date.now() + ms;
  for (;;) {
    const t = await tree(rig);
    if (t.state === "in-sync") return t.children;
    if (Date.now() > end) throw new Error(`mirror not in sync: ${JSON.stringify(t)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function waitState(rig: Rig, ok: (state: string) => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok((await tree(rig)).state)) {
    if (Date.now() > end) throw new Error("mirror state did not change");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Polls the tree until leg `name` passes `ok`; returns its view then. */
export async function waitLeg(
  rig: Rig,
  name: string,
  ok: (leg: LegView) => boolean,
): Promise<LegView> {
  const end = Date.now() + 20_000;
  for (;;) {
    const leg = (await tree(rig)).children.find((l) => l.name === name);
    if (leg !== undefined && ok(leg)) return leg;
    if (Date.now() > end) throw new Error(`${name} never got there: ${JSON.stringify(leg)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const resynced = (legs: LegView[], name: string) =>
  legs.find((l) => l.name === name)?.detail?.resyncedBytes ?? -1;

export const copied = (legs: LegView[], name: string) =>
  legs.find((l) => l.name === name)?.detail?.copiedBytes ?? -1;

export async function writeRound(rig: Rig, bytes: number, seq: number): Promise<Deno.ChildProcess> {
  const buf = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += BLOCK) fillBlock(buf.subarray(at, at + BLOCK), at, 1, seq);
  const image = `${rig.dir}/round${seq}.img`;
  await Deno.writeFile(image, buf);
  return new Deno.Command("nbdcopy", { args: [image, rig.uri], stderr: "piped" }).spawn();
}

export async function mustFinish(copy: Deno.ChildProcess): Promise<void> {
  const out = await copy.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

/** Stops everything and reads each leg's data area straight from its file. */
export async function legData(rig: Rig): Promise<Uint8Array[]> {
  await rig.serve?.stop();
  rig.serve = undefined;
  await Promise.all([...rig.nodes.values()].map((n) => n.stop()));
  return await Promise.all(
    LEGS.map(async (n) =>
      (await Deno.readFile(`${rig.dir}/${n}.img`)).subarray(DATA_OFFSET, DATA_OFFSET + SIZE)
    ),
  );
}

export function assertIdentical(data: Uint8Array[]): void {
  const sums = data.map((d) => createHash("sha256").update(d).digest("hex"));
  assert.deepEqual(sums, [sums[0], sums[0], sums[0]], "every leg holds the same bytes");
}

export function assertStamps(data: Uint8Array, expect: (offset: number) => number[]): void {
  for (let at = 0; at < data.length; at += BLOCK) {
    const stamp = checkBlock(data.subarray(at, at + BLOCK), at);
    assert.ok(!(stamp instanceof Error), `block at ${at}: ${stamp}`);
    assert.ok(expect(at).includes(stamp.seq), `block at ${at} holds seq ${stamp.seq}`);
  }
}

/** Reads the export through nbdcopy: whether it worked, the first `bytes`, and its errors. */
export async function readBack(
  rig: Rig,
  bytes: number,
): Promise<{ ok: boolean; data: Uint8Array; error: string }> {
  const out = `${rig.dir}/readback.img`;
  await Deno.remove(out).catch(() => {});
  const res = await new Deno.Command("nbdcopy", {
    args: [rig.uri, out],
    stderr: "piped",
  }).output();
  const data = await Deno.readFile(out).catch(() => new Uint8Array(0));
  const error = new TextDecoder().decode(res.stderr);
  return { ok: res.code === 0, data: data.subarray(0, bytes), error };
}

/** Runs `dst ctl --url STATUS [--token-file] ARGS` and collects what it said. */
export async function ctl(
  rig: Rig,
  args: string[],
  options: { token?: boolean; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string; err: string }> {
  const tokenArgs = options.token === false ? [] : ["--token-file", `${rig.dir}/status.token`];
  const res = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-net",
      mainTs,
      "ctl",
      "--url",
      rig.status,
      ...tokenArgs,
      ...args,
    ],
    env: { DST_STATUS_TOKEN: "", ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: res.code, out: text(res.stdout), err: text(res.stderr) };
}

/**
 * Writes seq `seq` blocks of `write` bytes over [0, bytes) in a shuffled order (`shuffle` seeds
 * it), `depth` in flight, through a raw NBD client, until done or the server goes away; returns
 * the offsets whose writes were acknowledged. `onAck` runs after each acknowledgement (to pull
 * the plug mid-load).
 */
export async function ackedWrites(
  rig: Rig,
  load: { bytes: number; write: number; seq: number; depth: number; shuffle: number },
  onAck: (acked: number) => void,
): Promise<Set<number>> {
  const { bytes, write, seq, depth } = load;
  const offsets = Array.from({ length: bytes / write }, (_, i) => i * write);
  let state = load.shuffle;
  for (let i = offsets.length - 1; i > 0; i--) {
    state = (state * 1103515245 + 12345) >>> 0;
    const j = state % (i + 1);
    [offsets[i], offsets[j]] = [offsets[j]!, offsets[i]!];
  }
  const acked = new Set<number>();
  const { client } = await openExport(rig.port);
  const payload = new Uint8Array(write);
  let next = 0;
  let inFlight = 0;
  try {
    while (next < offsets.length || inFlight > 0) {
      while (inFlight < depth && next < offsets.length) {
        const at = offsets[next]!;
        fillBlock(payload, at, 1, seq);
        await client.request(1, next, at, write, { payload });
        next++;
        inFlight++;
      }
      const reply = await client.reply();
      inFlight--;
      if (reply.error === 0) acked.add(offsets[reply.handle]!);
      onAck(acked.size);
    }
  } catch {
    // the server went away: what was acknowledged so far is the record
  } finally {
    client.close();
  }
  return acked;
}
