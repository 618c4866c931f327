/**
 * `dst serve --config FILE`: assembles the storage a topology file describes (remote sizes
 * discovered now), exports it over NBD, optionally serves it as a dst node so another storage can
 * use it as a child, and shows its status over HTTP. SIGTERM or SIGINT stops it gracefully.
 */
import { dirname, resolve } from "node:path";
import { ActorSystem } from "../actors/system.ts";
import { serveNode } from "../actors/node/server.ts";
import { clientUri } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { startStatusEndpoint } from "../status/endpoint.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { assemble, type Storage } from "../storage/assemble.ts";
import { loadTopology, type Topology } from "../storage/topology.ts";
import { consoleLogger, type Logger } from "../util/log.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { nbdLimitFlags, nbdLimitHelp, nbdLimitsFrom } from "./nbd_flags.ts";
import type { NbdLimits } from "../nbd/limits.ts";
import { readSecret } from "./secret.ts";
import { untilStopSignal } from "./signals.ts";

const help =
  `Usage: dst serve --config FILE [--status HOST:PORT [--status-token-file PATH]] [--id NAME]
                 [--nbd-max-connections N] [--nbd-max-handshakes N]
                 [--nbd-idle-timeout SECONDS] [--nbd-stall-timeout SECONDS]

Assembles the storage described by a topology file, exports it over NBD (the file's
"export.listen"), serves it as a dst node when the file has "node.listen", and prints where
clients attach.

Options:
  --config FILE       the topology file (JSON; see README.md)
  --status HOST:PORT  serve the status page, JSON, /metrics and control there (default: off;
                      loopback is safest)
  --status-token-file PATH
                      where the bearer token for control actions is kept (made there on the
                      first start); else DST_STATUS_TOKEN, else a fresh one printed at start
  --id NAME           this process's node identity (default: the storage's name)
${nbdLimitHelp(22)}
  -h, --help          show this help

Example topology (a mirror of a local file and a remote node):
  { "storage": "main",
    "nodes": { "main": { "kind": "mirror", "legs": ["a", "b"] },
               "a": { "kind": "file", "path": "a.img", "size": "1G" },
               "b": { "kind": "remote", "url": "tcp://10.0.0.2:7001" } },
    "export": { "listen": ["tcp://127.0.0.1:10809"] } }`;

export interface Running {
  readonly storage: Storage;
  /** NBD URIs clients attach to. */
  readonly uris: readonly string[];
  readonly nodeUrl?: string;
  readonly statusUrl?: string;
  /** What to print about the status endpoint: its URL, and the control token when made now. */
  readonly statusLines?: readonly string[];
  stop(): Promise<void>;
}

/** Starts everything a topology asks for; used by `dst serve` and the embedded default. */
export async function startStorage(
  topology: Topology,
  options: {
    baseDir: string;
    status?: string;
    statusTokenFile?: string;
    id?: string;
    /** Bounds on NBD clients; unset ones (all, for \`dst start\`) stay at their defaults. */
    nbd?: Partial<NbdLimits>;
    log: Logger;
  },
): Promise<Running> {
  const log = options.log;
  const secretFile = topology.secretFile === undefined
    ? undefined
    : resolve(options.baseDir, topology.secretFile);
  const secret = await readSecret(secretFile, "secretFile");
  const id = options.id ?? topology.storage;
  const system = new ActorSystem({ node: id, log });
  const storage = await assemble(topology, {
    system,
    node: id,
    baseDir: options.baseDir,
    logger: log,
    ...(secret === undefined ? {} : { secret }),
  });
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => {});
    await storage.device.flush().catch(() => {});
    await storage.close();
    await system.shutdown();
  };
  try {
    // Counts what clients of the NBD export and the dst node ask for, for status and /metrics.
    const device = new CountingBlockDevice(storage.device);
    const uris: string[] = [];
    if (topology.export !== undefined) {
      const name = topology.export.name ?? "dst";
      const nbd = new NbdServer({
        exports: [{ name, device, description: `dst storage ${topology.storage}` }],
        log,
        ...options.nbd,
      });
      stops.push(() => nbd.close());
      for (const url of topology.export.listen) {
        uris.push(clientUri((await nbd.listen(url)).address, name));
      }
    }
    let nodeUrl: string | undefined;
    if (topology.node !== undefined) {
      const server = await serveNode(topology.node.listen, device, {
        node: id,
        logger: log,
        ...(secret === undefined ? {} : { secret }),
      });
      stops.push(() => server.close());
      nodeUrl = server.url;
    }
    let status: { url: string; lines: readonly string[] } | undefined;
    if (options.status !== undefined) {
      const http = await startStatusEndpoint({
        name: topology.storage,
        tree: storage.tree,
        exports: uris,
        io: device.stats,
        control: storage.control,
        listen: options.status,
        ...(options.statusTokenFile === undefined ? {} : { tokenFile: options.statusTokenFile }),
      });
      stops.push(() => http.shutdown());
      status = http;
    }
    return {
      storage,
      uris,
      ...(nodeUrl === undefined ? {} : { nodeUrl }),
      ...(status === undefined ? {} : { statusUrl: status.url, statusLines: status.lines }),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function run(args: string[]): Promise<number> {
  const values = parseFlags(args, {
    config: { type: "string" },
    status: { type: "string" },
    "status-token-file": { type: "string" },
    id: { type: "string" },
    ...nbdLimitFlags,
    help: { type: "boolean", short: "h" },
  });
  if (values.config === undefined) throw new UsageError("--config FILE is required");
  const nbd = nbdLimitsFrom(values);
  const topology = await loadTopology(values.config);
  if (topology.export === undefined && topology.node === undefined) {
    throw new UsageError(`${values.config} has neither "export" nor "node": nothing to serve`);
  }
  const log = consoleLogger("info", "dst serve");
  const stopSignal = untilStopSignal();
  try {
    const running = await startStorage(topology, {
      baseDir: dirname(resolve(values.config)),
      nbd,
      log,
      ...(values.status === undefined ? {} : { status: values.status }),
      ...(values["status-token-file"] === undefined
        ? {}
        : { statusTokenFile: values["status-token-file"] }),
      ...(values.id === undefined ? {} : { id: values.id }),
    });
    for (const uri of running.uris) console.log(uri);
    if (running.nodeUrl !== undefined) console.log(`node ${running.nodeUrl}`);
    for (const line of running.statusLines ?? []) console.log(line);
    const signal = await stopSignal.signal;
    log.log("info", "shutting down", { signal });
    await running.stop();
    return 0;
  } finally {
    stopSignal.dispose();
  }
}

export const serveCommand: Command = {
  name: "serve",
  summary: "assemble a storage from a topology file and serve it (NBD, dst node, status)",
  help,
  run,
};
