/**
 * `dst start`: dst's main job on an embedded default, for a newcomer's first run. Three
 * `dst node` processes serve file media under a data folder; this process assembles a mirror over
 * them as remote nodes, exports it over NBD and serves the status page. A second run reopens the
 * same media. Its ports and paths are checked before any node process starts; a start that
 * fails takes back what it made. Ctrl-C stops everything cleanly, within the shutdown deadline.
 */
import { resolve } from "node:path";
import { consoleLogger, type Logger, logSettings } from "../util/log.ts";
import { withOsContext } from "../util/os_error.ts";
import { parseSize } from "./export.ts";
import { parseTopology } from "../storage/topology.ts";
import type { Command } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { LOG_HELP } from "./global.ts";
import { type PlannedListen, type PlannedMedia, preflight, statusListenUrl } from "./preflight.ts";
import { type Running, startStorage } from "./serve.ts";
import { attachCommands, shellQuote } from "./attach.ts";
import { removeRecord, writeRecord } from "./run_record.ts";
import { NodeSupervisor, withProcessDetail } from "./supervisor.ts";
import { SHUTDOWN_HELP, shutdownTimeout, untilStopSignal } from "./signals.ts";

const help = `Usage: dst start [--data DIR] [--size SIZE] [--nbd URL] [--status HOST:PORT]
                 [--shutdown-timeout DURATION]

Runs dst on its embedded default: a mirror over three local dst node processes on files
under DIR, exported over NBD, with the status page up.

A node process that dies is started again after a backoff (0.5 s growing to 30 s while it
keeps dying); the status shows under each leg how its process is doing. While it serves,
DIR/start.json tells \`dst status\` and \`dst ctl\` (run beside DIR, or given --data DIR)
where the status page and the control token are. Ctrl-C stops the storage, then the nodes.

Options:
  --data DIR          where the legs' media live (default .data); reopened on the next run
  --size SIZE         size of each leg when first created (default 256M)
  --nbd URL           where NBD clients attach (default tcp://127.0.0.1:10809)
  --status HOST:PORT  the status page (default 127.0.0.1:8080)
${SHUTDOWN_HELP}
${LOG_HELP}
  -h, --help          show this help`;

const LEGS = 3;

/** The storage id ("age") of the default storage, made on the first run and kept in DIR. */
async function storageId(dir: string, made: (path: string) => void): Promise<string> {
  const path = `${dir}/storage-id`;
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    const id = [...crypto.getRandomValues(new Uint8Array(16))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    await withOsContext("write", path, () => Deno.writeTextFile(path, `${id}\n`));
    made(path);
    return id;
  }
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/** Checks every port and path before anything is made: nothing is left by a start that cannot run. */
async function checkStart(dir: string, nbd: string, status: string, size: number): Promise<void> {
  const listens: PlannedListen[] = [
    { url: nbd, from: "--nbd" },
    { url: statusListenUrl(status), from: "--status" },
  ];
  const media: PlannedMedia[] = [];
  // Inside a folder we are about to make, nothing can be in the way.
  if (await exists(dir)) {
    for (let i = 0; i < LEGS; i++) {
      listens.push({ url: `unix://${dir}/leg${i}.sock`, from: `leg${i}` });
      media.push({ path: `${dir}/leg${i}.img`, from: `leg${i}`, size });
    }
  }
  await preflight(listens, media);
}

interface Made {
  readonly path: string;
  readonly folder?: boolean;
}

/** Takes back, newest first, what a start that failed made. */
async function removeMade(made: Made[], log: Logger): Promise<void> {
  for (const { path, folder } of made.reverse()) {
    // A folder this run made holds only what this run put there.
    await Deno.remove(path, { recursive: folder === true }).catch((error) => {
      log.log("warn", "could not remove what the failed start made", {
        path,
        error: String(error),
      });
    });
  }
}

async function run(args: string[]): Promise<number> {
  const values = parseFlags(args, {
    data: { type: "string", default: ".data" },
    size: { type: "string", default: "256M" },
    nbd: { type: "string", default: "tcp://127.0.0.1:10809" },
    status: { type: "string", default: "127.0.0.1:8080" },
    "shutdown-timeout": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  const size = parseSize(values.size, "--size");
  const deadlineMs = shutdownTimeout(values["shutdown-timeout"]);
  const dir = resolve(values.data);
  const log = consoleLogger(undefined, "dst");
  const nodes: NodeSupervisor[] = [];
  const killNodes = () => nodes.forEach((n) => n.signal("SIGKILL"));
  // Node processes never outlive an abandoned shutdown.
  const stopSignal = untilStopSignal({ log, deadlineMs, onAbandon: killNodes });
  /** Files and folders this run made, taken back if it fails before it serves. */
  const made: Made[] = [];
  let ready = false;
  let running: Running | undefined;
  try {
    await checkStart(dir, values.nbd, values.status, size);
    if (!await exists(dir)) {
      await withOsContext(
        "create the data folder",
        dir,
        () => Deno.mkdir(dir, { recursive: true }),
      );
      made.push({ path: dir, folder: true });
    }
    const id = await storageId(dir, (path) => made.push({ path }));
    const { level, format } = logSettings();
    for (let i = 0; i < LEGS; i++) {
      const media = `${dir}/leg${i}.img`;
      const existed = await exists(media);
      if (!existed) made.push({ path: media });
      const node = new NodeSupervisor(`leg${i}`, [
        "--listen",
        `unix://${dir}/leg${i}.sock`,
        "--data",
        media,
        "--id",
        `leg${i}`,
        "--storage-id",
        id,
        "--shutdown-timeout",
        `${deadlineMs}ms`,
        "--exit-with-parent",
        "--log-level",
        level,
        "--log-format",
        format,
        ...(existed ? [] : ["--size", String(size)]),
      ], { log });
      nodes.push(node);
      await stopSignal.step(`starting node leg${i}`, () => node.start());
    }
    const legs = nodes.map((n) => n.name);
    const topology = parseTopology({
      storage: "dst",
      nodes: {
        dst: { kind: "mirror", legs },
        ...Object.fromEntries(
          nodes.map((n) => [n.name, { kind: "remote", url: n.url!, storageId: id }]),
        ),
      },
      export: { listen: [values.nbd] },
    });
    const tokenFile = `${dir}/status-token`;
    if (!await exists(tokenFile)) made.push({ path: tokenFile });
    running = await stopSignal.step("starting the storage", () =>
      startStorage(topology, {
        baseDir: dir,
        status: values.status,
        // Kept beside the data, so control keeps working across runs (dst status, dst ctl).
        statusTokenFile: tokenFile,
        log,
        step: stopSignal.step,
        // The status says under each leg how its node process is doing.
        decorateTree: (tree) =>
          withProcessDetail(tree, (name) => nodes.find((n) => n.name === name)?.status()),
      }));
    ready = true;
    await writeRecord(dir, {
      pid: Deno.pid,
      statusUrl: running.statusUrl!,
      tokenFile,
      nbd: running.uris,
      startedAt: Date.now(),
    });
    printWelcome(dir, running);
    const signal = await stopSignal.signal;
    log.log("info", "shutting down", { signal });
    // The storage first (NBD, flush, the mirror, its links), then the nodes it was using: a
    // mirror that sees its legs' links drop would log them leaving the in-sync set.
    await running.stop();
    running = undefined;
    return 0;
  } finally {
    await running?.stop();
    await stopSignal.step(
      () =>
        `stopping the node processes (${
          nodes.map((n) => n.pid).filter((p) => p !== undefined).join(", ") || "none"
        })`,
      () => Promise.all(nodes.map((n) => n.stop(deadlineMs))),
    );
    if (ready) await removeRecord(dir, Deno.pid);
    else await removeMade(made, log);
    stopSignal.dispose();
  }
}

function printWelcome(dir: string, running: Running): void {
  const uri = running.uris[0]!;
  const { attach, detach } = attachCommands(uri, dir);
  console.log(`dst is up: a ${LEGS}-leg mirror over dst node processes, media in ${dir}`);
  for (const u of running.uris) console.log(`NBD:    ${u}`);
  console.log(`status: ${running.statusUrl}`);
  console.log(`token:  in ${dir}/status-token (control actions on the status page need it)`);
  console.log(
    `Watch:  deno task dst status --watch      (exit code: 0 healthy, 1 degraded, 2 down)`,
  );
  console.log(`Try:    nbdinfo ${shellQuote(uri)}`);
  console.log(`Attach: ${attach}`);
  console.log(`Detach: ${detach}`);
  console.log("Ctrl-C stops it; the next run reopens the same data.");
}

export const startCommand: Command = {
  name: "start",
  summary: "run the embedded default: a 3-leg mirror of dst node processes over NBD",
  help,
  run,
};
