/**
 * `dst start`: dst's main job on an embedded default, for a newcomer's first run. Three
 * `dst node` processes serve file media under a data folder; this process assembles a mirror over
 * them as remote nodes, exports it over NBD and serves the status page. A second run reopens the
 * same media. Ctrl-C stops everything cleanly.
 */
import { resolve } from "node:path";
import { consoleLogger } from "../util/log.ts";
import { parseSize } from "./export.ts";
import { parseTopology } from "../storage/topology.ts";
import type { Command } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { startStorage } from "./serve.ts";
import { untilStopSignal } from "./signals.ts";

const help = `Usage: dst start [--data DIR] [--size SIZE] [--nbd URL] [--status HOST:PORT]

Runs dst on its embedded default: a mirror over three local dst node processes on files
under DIR, exported over NBD, with the status page up.

Options:
  --data DIR          where the legs' media live (default .data); reopened on the next run
  --size SIZE         size of each leg when first created (default 256M)
  --nbd URL           where NBD clients attach (default tcp://127.0.0.1:10809)
  --status HOST:PORT  the status page (default 127.0.0.1:8080)
  -h, --help          show this help`;

const LEGS = 3;

interface NodeProcess {
  readonly child: Deno.ChildProcess;
  readonly url: string;
}

/** Starts `dst node` and waits for the line with its URL. */
async function startNode(args: string[], name: string): Promise<NodeProcess> {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", main, "node", ...args],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      const status = await child.status;
      throw new Error(`node ${name} exited with code ${status.code} before it was ready`);
    }
    text += value;
  }
  // Keep draining so the child never blocks on a full pipe.
  void (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) { /* discard */ }
  })();
  return { child, url: text.split("\n")[0]!.trim() };
}

/** The storage id ("age") of the default storage, made on the first run and kept in DIR. */
async function storageId(dir: string): Promise<string> {
  const path = `${dir}/storage-id`;
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch {
    const id = [...crypto.getRandomValues(new Uint8Array(16))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    await Deno.writeTextFile(path, `${id}\n`);
    return id;
  }
}

async function run(args: string[]): Promise<number> {
  const values = parseFlags(args, {
    data: { type: "string", default: ".data" },
    size: { type: "string", default: "256M" },
    nbd: { type: "string", default: "tcp://127.0.0.1:10809" },
    status: { type: "string", default: "127.0.0.1:8080" },
    help: { type: "boolean", short: "h" },
  });
  const size = parseSize(values.size, "--size");
  const dir = resolve(values.data);
  await Deno.mkdir(dir, { recursive: true });
  const id = await storageId(dir);
  const log = consoleLogger("info", "dst");
  const stopSignal = untilStopSignal();
  const nodes: NodeProcess[] = [];
  try {
    for (let i = 0; i < LEGS; i++) {
      const media = `${dir}/leg${i}.img`;
      const exists = await Deno.lstat(media).then(() => true, () => false);
      nodes.push(
        await startNode([
          "--listen",
          `unix://${dir}/leg${i}.sock`,
          "--data",
          media,
          "--id",
          `leg${i}`,
          "--storage-id",
          id,
          ...(exists ? [] : ["--size", String(size)]),
        ], `leg${i}`),
      );
    }
    const legs = nodes.map((_, i) => `leg${i}`);
    const topology = parseTopology({
      storage: "dst",
      nodes: {
        dst: { kind: "mirror", legs },
        ...Object.fromEntries(
          nodes.map((n, i) => [`leg${i}`, { kind: "remote", url: n.url, storageId: id }]),
        ),
      },
      export: { listen: [values.nbd] },
    });
    const running = await startStorage(topology, {
      baseDir: dir,
      status: values.status,
      // Kept beside the data, so control keeps working across runs (dst status, dst ctl).
      statusTokenFile: `${dir}/status-token`,
      log,
    });
    console.log(`dst is up: a ${LEGS}-leg mirror over dst node processes, media in ${dir}`);
    for (const uri of running.uris) console.log(`NBD:    ${uri}`);
    console.log(`status: ${running.statusUrl}`);
    console.log(`token:  in ${dir}/status-token (control actions on the status page need it)`);
    console.log(`Watch:  deno task dst status ${running.statusUrl} --watch`);
    console.log(`Try:    nbdinfo ${running.uris[0]}`);
    console.log(
      `Attach: nbdfuse /mnt/dst ${running.uris[0]} & losetup -f --show /mnt/dst/nbd` +
        `   (or: nbd-client where the kernel has nbd)`,
    );
    console.log("Ctrl-C stops it; the next run reopens the same data.");
    const signal = await stopSignal.signal;
    log.log("info", "shutting down", { signal });
    await running.stop();
    return 0;
  } finally {
    stopSignal.dispose();
    for (const node of nodes) {
      try {
        node.child.kill("SIGTERM");
      } catch {
        // already gone
      }
    }
    await Promise.all(nodes.map((n) => n.child.status));
  }
}

export const startCommand: Command = {
  name: "start",
  summary: "run the embedded default: a 3-leg mirror of dst node processes over NBD",
  help,
  run,
};
