/**
 * `dst start`: dst's main job on an embedded default, for a newcomer's first run. Three
 * `dst node` processes serve file media under a data folder; this process assembles a mirror over
 * them as remote nodes, exports it over NBD and serves the status page. A second run reopens the
 * same media. Its ports and paths are checked before any node process starts; a start that
 * fails takes back what it made. Ctrl-C stops everything cleanly, within the shutdown deadline.
 */
import { resolve } from "node:path";
import { consoleLogger, type Logger } from "../util/log.ts";
import { withOsContext } from "../util/os_error.ts";
import { parseSize } from "./export.ts";
import { parseTopology } from "../storage/topology.ts";
import type { Command } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { type PlannedListen, type PlannedMedia, preflight, statusListenUrl } from "./preflight.ts";
import { startStorage } from "./serve.ts";
import { SHUTDOWN_HELP, shutdownTimeout, untilStopSignal } from "./signals.ts";

const help = `Usage: dst start [--data DIR] [--size SIZE] [--nbd URL] [--status HOST:PORT]
                 [--shutdown-timeout DURATION]

Runs dst on its embedded default: a mirror over three local dst node processes on files
under DIR, exported over NBD, with the status page up.

Options:
  --data DIR          where the legs' media live (default .data); reopened on the next run
  --size SIZE         size of each leg when first created (default 256M)
  --nbd URL           where NBD clients attach (default tcp://127.0.0.1:10809)
  --status HOST:PORT  the status page (default 127.0.0.1:8080)
${SHUTDOWN_HELP}
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
  const log = consoleLogger("info", "dst");
  const nodes: NodeProcess[] = [];
  const killNodes = (signal: Deno.Signal) => {
    for (const node of nodes) {
      try {
        node.child.kill(signal);
      } catch {
        // already gone
      }
    }
  };
  // Node processes never outlive an abandoned shutdown.
  const stopSignal = untilStopSignal({ log, deadlineMs, onAbandon: () => killNodes("SIGKILL") });
  /** Files and folders this run made, taken back if it fails before it serves. */
  const made: Made[] = [];
  let ready = false;
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
    for (let i = 0; i < LEGS; i++) {
      const media = `${dir}/leg${i}.img`;
      const existed = await exists(media);
      if (!existed) made.push({ path: media });
      nodes.push(
        await stopSignal.step(`starting node leg${i}`, () =>
          startNode([
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
            ...(existed ? [] : ["--size", String(size)]),
          ], `leg${i}`)),
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
    const tokenFile = `${dir}/status-token`;
    if (!await exists(tokenFile)) made.push({ path: tokenFile });
    const running = await stopSignal.step("starting the storage", () =>
      startStorage(topology, {
        baseDir: dir,
        status: values.status,
        // Kept beside the data, so control keeps working across runs (dst status, dst ctl).
        statusTokenFile: tokenFile,
        log,
        step: stopSignal.step,
      }));
    ready = true;
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
    killNodes("SIGTERM");
    await stopSignal.step(
      `stopping the node processes (${nodes.map((n) => n.child.pid).join(", ") || "none"})`,
      async () => {
        // Bounded even without a stop signal (a failed start): a node that does not go is killed.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const gone = Promise.all(nodes.map((n) => n.child.status));
        const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), deadlineMs));
        if (await Promise.race([gone, late]) === "late") {
          log.log("warn", "node processes did not stop in time; killing them", {
            pids: nodes.map((n) => n.child.pid),
          });
          killNodes("SIGKILL");
        }
        clearTimeout(timer);
        await gone;
      },
    );
    if (!ready) await removeMade(made, log);
    stopSignal.dispose();
  }
}

export const startCommand: Command = {
  name: "start",
  summary: "run the embedded default: a 3-leg mirror of dst node processes over NBD",
  help,
  run,
};
