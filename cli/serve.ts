/**
 * `dst serve --config FILE`: assembles the storage a topology file describes (remote sizes
 * discovered now), exports it over NBD, optionally serves it as a dst node so another storage can
 * use it as a child, and shows its status over HTTP. Every listen address and media path is
 * checked before anything is made; a start that fails later takes back what it made. SIGTERM or
 * SIGINT stops it gracefully, within the shutdown deadline.
 */
import { dirname, resolve } from "node:path";
import { ActorSystem } from "../actors/runtime/system.ts";
import { serveNode } from "../actors/node/server.ts";
import { clientUri } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { startStatusEndpoint } from "../status/endpoint.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { assemble, type Storage, type TreeNode } from "../storage/assemble.ts";
import { plannedMedia } from "../storage/leaves.ts";
import { loadTopology, type Topology } from "../storage/topology.ts";
import { parseDuration } from "../util/duration.ts";
import { consoleLogger, type Logger } from "../util/log.ts";
import { osError } from "../util/os_error.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { LOG_HELP } from "./global.ts";
import { LIMIT_FLAGS, LIMITS_HELP, type NodeLimits, parseLimits } from "./node_limits.ts";
import { type PlannedListen, preflight, statusListenUrl } from "./preflight.ts";
import { nbdLimitFlags, nbdLimitHelp, nbdLimitsFrom } from "./nbd_flags.ts";
import type { NbdLimits } from "../nbd/limits.ts";
import { readSecret } from "./secret.ts";
import { SHUTDOWN_HELP, shutdownTimeout, type StopSignal, untilStopSignal } from "./signals.ts";

const help =
  `Usage: dst serve --config FILE [--status HOST:PORT [--status-token-file PATH]] [--id NAME]
                 [--force] [--io-timeout DURATION] [--shutdown-timeout DURATION]
                 [--nbd-max-connections N] [--nbd-max-handshakes N]
                 [--nbd-idle-timeout SECONDS] [--nbd-stall-timeout SECONDS] [LIMITS]

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
  --force             start a mirror even when a leg that cannot be reached was not recorded
                      as outdated by the legs that can: writes only that leg holds (if it was
                      the last to serve) are then not served; when it returns it is judged,
                      and refused as split brain if it was written apart (nothing overwritten)
  --io-timeout DURATION
                      how long a request to a remote leaf outside a mirror may wait for a
                      lost node before it fails with EIO (a leaf's "ioTimeout" wins; mirror
                      legs fail at once unless theirs says otherwise; default 30s)
${SHUTDOWN_HELP}
${LOG_HELP}
${nbdLimitHelp(22)}
  -h, --help          show this help

Limits of the dst node listener ("node.listen"), as for dst node:
${LIMITS_HELP}

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

/** The addresses a topology (and a status endpoint) will listen on, for the preflight. */
export function plannedListens(topology: Topology, status: string | undefined): PlannedListen[] {
  return [
    ...(topology.export?.listen ?? []).map((url, i) => ({ url, from: `export.listen[${i}]` })),
    ...(topology.node === undefined ? [] : [{ url: topology.node.listen, from: "node.listen" }]),
    ...(status === undefined ? [] : [{ url: statusListenUrl(status), from: "--status" }]),
  ];
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
    /** Bounds of the node listener (default: the node server's). */
    nodeLimits?: NodeLimits;
    /** Start mirrors without unreachable legs not known to be outdated (see --force). */
    force?: boolean;
    /** Default I/O timeout of remote leaves outside a mirror. */
    ioTimeoutMs?: number;
    /** Names each part of the stop, so an abandoned shutdown says what it left. */
    step?: StopSignal["step"];
    /** What the status endpoint shows of the tree (\`dst start\` adds its node processes). */
    decorateTree?: (tree: TreeNode) => TreeNode;
  },
): Promise<Running> {
  const log = options.log;
  const step = options.step ?? ((_what, work) => work());
  // Listeners and media are checked before anything is made or started.
  await preflight(
    plannedListens(topology, options.status),
    plannedMedia(topology, (path) => resolve(options.baseDir, path)),
  );
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
    ...(options.ioTimeoutMs === undefined ? {} : { ioTimeoutMs: options.ioTimeoutMs }),
    ...(secret === undefined ? {} : { secret }),
    ...(options.force ? { force: true } : {}),
  }).catch(async (error) => {
    await system.shutdown();
    throw error;
  });
  const stops: [string, () => Promise<void>][] = [];
  const stop = async () => {
    for (const [what, s] of stops.reverse()) await step(what, () => s().catch(() => {}));
    await step("flushing the storage", () => storage.device.flush().catch(() => {}));
    await step("closing the storage", () => storage.close());
    await step("stopping the actors", () => system.shutdown());
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
      stops.push(["closing the NBD server", () => nbd.close()]);
      for (const url of topology.export.listen) {
        const bound = await nbd.listen(url).catch((error) => {
          throw osError("listen on", url, error);
        });
        uris.push(clientUri(bound.address, name));
      }
    }
    let nodeUrl: string | undefined;
    if (topology.node !== undefined) {
      const server = await serveNode(topology.node.listen, device, {
        node: id,
        logger: log,
        ...options.nodeLimits,
        ...(secret === undefined ? {} : { secret }),
      }).catch((error) => {
        throw osError("listen on", topology.node!.listen, error);
      });
      stops.push(["closing the node server", () => server.close()]);
      nodeUrl = server.url;
    }
    let status: { url: string; lines: readonly string[] } | undefined;
    if (options.status !== undefined) {
      const http = await startStatusEndpoint({
        name: topology.storage,
        tree: options.decorateTree?.(storage.tree) ?? storage.tree,
        exports: uris,
        io: device.stats,
        control: storage.control,
        listen: options.status,
        ...(options.statusTokenFile === undefined ? {} : { tokenFile: options.statusTokenFile }),
      });
      stops.push(["closing the status endpoint", () => http.shutdown()]);
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
    // Media the assembly made for a storage that never served is not left behind.
    for (const path of storage.created) await Deno.remove(path).catch(() => {});
    throw error;
  }
}

async function run(args: string[]): Promise<number> {
  const values = parseFlags(args, {
    config: { type: "string" },
    status: { type: "string" },
    "status-token-file": { type: "string" },
    id: { type: "string" },
    force: { type: "boolean" },
    ...LIMIT_FLAGS,
    "io-timeout": { type: "string" },
    "shutdown-timeout": { type: "string" },
    ...nbdLimitFlags,
    help: { type: "boolean", short: "h" },
  });
  if (values.config === undefined) throw new UsageError("--config FILE is required");
  const nodeLimits = parseLimits(values);
  const nbd = nbdLimitsFrom(values);
  const deadlineMs = shutdownTimeout(values["shutdown-timeout"]);
  let ioTimeoutMs: number | undefined;
  try {
    if (values["io-timeout"] !== undefined) ioTimeoutMs = parseDuration(values["io-timeout"]);
  } catch (error) {
    throw new UsageError(`--io-timeout ${(error as Error).message}`);
  }
  const topology = await loadTopology(values.config);
  if (topology.export === undefined && topology.node === undefined) {
    throw new UsageError(`${values.config} has neither "export" nor "node": nothing to serve`);
  }
  const log = consoleLogger(undefined, "dst serve");
  const stopSignal = untilStopSignal({ log, deadlineMs });
  try {
    const running = await stopSignal.step("starting the storage", () =>
      startStorage(topology, {
        baseDir: dirname(resolve(values.config!)),
        log,
        step: stopSignal.step,
        nodeLimits,
        nbd,
        ...(values.force ? { force: true } : {}),
        ...(ioTimeoutMs === undefined ? {} : { ioTimeoutMs }),
        ...(values.status === undefined ? {} : { status: values.status }),
        ...(values["status-token-file"] === undefined
          ? {}
          : { statusTokenFile: values["status-token-file"] }),
        ...(values.id === undefined ? {} : { id: values.id }),
      }));
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
