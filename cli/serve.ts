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
import { Ownership, parentGrants } from "../actors/node/owner.ts";
import { clientUri } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { startStatusEndpoint } from "../status/endpoint.ts";
import { EventLog, legMoves } from "../status/events.ts";
import { DST_VERSION } from "../status/process.ts";
import { type ClusterStatus, withOwnership } from "../status/ownership.ts";
import { parseClusterUrl } from "../cluster/address.ts";
import { type ClusterPlan, type Elected, whenElected } from "../cluster/standby.ts";
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
import { loadNbdTls, type NbdTls } from "../nbd/tls.ts";
import { tlsFilesFrom, tlsFlags, tlsHelp } from "./tls_flags.ts";

const help =
  `Usage: dst serve --config FILE [--status HOST:PORT [--status-token-file PATH]] [--id NAME]
                 [--force] [--on-fenced exit|stay] [--io-timeout DURATION]
                 [--cluster etcd://HOST:PORT[,...] [--cluster-key KEY] [--lease DURATION]]
                 [--shutdown-timeout DURATION]
                 [--nbd-max-connections N] [--nbd-max-handshakes N]
                 [--nbd-idle-timeout SECONDS] [--nbd-stall-timeout SECONDS] [LIMITS]
                 [--tls on|require --tls-cert PEM --tls-key PEM [--tls-ca PEM]]

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
  --cluster etcd://HOST:PORT[,HOST:PORT...]
                      elect one active exporter of this storage through etcd: until elected
                      this one stands by (it prints "standby KEY LABEL"); elected, it takes a
                      higher epoch from etcd, claims the legs (fencing the old exporter at the
                      nodes) and serves. Without it: one exporter, epochs on the media alone
  --cluster-key KEY   the storage's election key (default: the topology's "storage")
  --lease DURATION    the etcd lease: how long an active exporter that stopped answering
                      (crash, hang, cut off) keeps the storage before a standby takes over
                      (whole seconds, default 5s)
  --on-fenced exit|stay
                      when a newer exporter of this storage took its nodes over (this one
                      is fenced: every request fails with EIO): exit with code 3 (default),
                      or stay up showing why on the status endpoint
  --io-timeout DURATION
                      how long a request to a remote leaf outside a mirror may wait for a
                      lost node before it fails with EIO (a leaf's "ioTimeout" wins; mirror
                      legs fail at once unless theirs says otherwise; default 30s)
${SHUTDOWN_HELP}
${LOG_HELP}
${nbdLimitHelp(22)}
${tlsHelp(22)}
                      (or the topology's "export.tls": {"mode", "cert", "key", "ca"})
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
  /** This exporter's claim on its nodes; fenced once a newer exporter took them. */
  readonly ownership: Ownership;
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
    /** NBD over TLS (from the flags); else the topology's export.tls, else plain text. */
    tls?: NbdTls;
    log: Logger;
    /** Bounds of the node listener (default: the node server's). */
    nodeLimits?: NodeLimits;
    /** Start mirrors without unreachable legs not known to be outdated (see --force). */
    force?: boolean;
    /** Default I/O timeout of remote leaves outside a mirror. */
    ioTimeoutMs?: number;
    /** Names each part of the stop, so an abandoned shutdown says what it left. */
    step?: StopSignal["step"];
    /** The claim on the nodes (an election's epoch); default: embedded, the last start wins. */
    ownership?: Ownership;
    /** The cluster this exporter was elected in, for status. */
    cluster?: ClusterStatus;
    /** What the status endpoint shows of the tree (\`dst start\` adds its node processes). */
    decorateTree?: (tree: TreeNode) => TreeNode;
  },
): Promise<Running> {
  const log = options.log;
  const step = options.step ?? ((_what, work) => work());
  const tlsSpec = topology.export?.tls;
  // Bad TLS material is reported, naming the file, before anything is made or started.
  const tls = options.tls ?? (tlsSpec === undefined ? undefined : await loadNbdTls({
    mode: tlsSpec.mode,
    cert: resolve(options.baseDir, tlsSpec.cert),
    key: resolve(options.baseDir, tlsSpec.key),
    ...(tlsSpec.ca === undefined ? {} : { ca: resolve(options.baseDir, tlsSpec.ca) }),
  }));
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
  const ownership = options.ownership ??
    new Ownership(`${id}@${Deno.hostname()}/${Deno.pid}`);
  ownership.onFenced((why) =>
    log.log("error", "this exporter was fenced: a newer one owns the storage", { why })
  );
  const system = new ActorSystem({ node: id, log });
  // The history the status page shows: from the start, so the legs' first judgments are in it.
  const events = new EventLog();
  events.add({ level: "info", kind: "process", message: `dst ${DST_VERSION} started ${id}` });
  const storage = await assemble(topology, {
    ownership,
    system,
    node: id,
    baseDir: options.baseDir,
    logger: log,
    onLegState: legMoves(events),
    ...(options.ioTimeoutMs === undefined ? {} : { ioTimeoutMs: options.ioTimeoutMs }),
    ...(secret === undefined ? {} : { secret }),
    ...(options.force ? { force: true } : {}),
  }).catch(async (error) => {
    await system.shutdown();
    throw error;
  });
  ownership.hold();
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
        ...(tls === undefined ? {} : { tls }),
      });
      stops.push(["closing the NBD server", () => nbd.close()]);
      for (const url of topology.export.listen) {
        const bound = await nbd.listen(url).catch((error) => {
          throw osError("listen on", url, error);
        });
        uris.push(clientUri(bound.address, name, tls?.mode === "require"));
      }
    }
    let nodeUrl: string | undefined;
    if (topology.node !== undefined) {
      const server = await serveNode(topology.node.listen, device, {
        node: id,
        logger: log,
        // A parent's claim on this storage is passed down to its own nodes.
        grants: parentGrants(ownership),
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
        tree: withOwnership(
          options.decorateTree?.(storage.tree) ?? storage.tree,
          ownership,
          options.cluster,
        ),
        exports: uris,
        io: device.stats,
        control: storage.control,
        events,
        listen: options.status,
        ...(options.statusTokenFile === undefined ? {} : { tokenFile: options.statusTokenFile }),
      });
      stops.push(["closing the status endpoint", () => http.shutdown()]);
      status = http;
    }
    return {
      storage,
      ownership,
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
    "on-fenced": { type: "string" },
    cluster: { type: "string" },
    "cluster-key": { type: "string" },
    lease: { type: "string" },
    ...LIMIT_FLAGS,
    "io-timeout": { type: "string" },
    "shutdown-timeout": { type: "string" },
    ...nbdLimitFlags,
    ...tlsFlags,
    help: { type: "boolean", short: "h" },
  });
  if (values.config === undefined) throw new UsageError("--config FILE is required");
  const tlsFiles = tlsFilesFrom(values);
  const onFenced = values["on-fenced"] ?? "exit";
  if (onFenced !== "exit" && onFenced !== "stay") {
    throw new UsageError(`--on-fenced must be exit or stay, got "${onFenced}"`);
  }
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
  if (tlsFiles !== undefined && topology.export === undefined) {
    throw new UsageError(`--tls is for the NBD export, and ${values.config} has no "export"`);
  }
  const tls = tlsFiles === undefined ? undefined : await loadNbdTls(tlsFiles);
  const cluster = clusterPlan(values, topology.storage);
  const log = consoleLogger(undefined, "dst serve");
  const stopSignal = untilStopSignal({ log, deadlineMs });
  let elected: Elected | undefined;
  try {
    if (cluster !== undefined) {
      // A standby checks what it will listen on and open now, not when it is elected.
      await preflight(
        plannedListens(topology, values.status),
        plannedMedia(topology, (path) => resolve(dirname(resolve(values.config!)), path)),
      );
      const stopped = new AbortController();
      void stopSignal.signal.then(() => stopped.abort());
      const label = `${values.id ?? topology.storage}@${Deno.hostname()}/${Deno.pid}`;
      elected = await whenElected(cluster, label, log, stopped.signal, () =>
        // Said first, so a script knows this exporter stands by (the URIs follow if elected).
        console.log(`standby ${cluster.key} ${label}`));
      if (elected === undefined) return 0;
    }
    const running = await stopSignal.step("starting the storage", () =>
      startStorage(topology, {
        ...(elected === undefined ? {} : {
          ownership: elected.ownership,
          cluster: { key: cluster!.key, view: elected.view },
        }),
        baseDir: dirname(resolve(values.config!)),
        log,
        step: stopSignal.step,
        nodeLimits,
        nbd,
        ...(tls === undefined ? {} : { tls }),
        ...(values.force ? { force: true } : {}),
        ...(ioTimeoutMs === undefined ? {} : { ioTimeoutMs }),
        ...(values.status === undefined ? {} : { status: values.status }),
        ...(values["status-token-file"] === undefined
          ? {}
          : { statusTokenFile: values["status-token-file"] }),
        ...(values.id === undefined ? {} : { id: values.id }),
      }));
    await elected?.term.publish({
      nbd: running.uris,
      ...(running.statusUrl === undefined ? {} : { status: running.statusUrl }),
      ...(running.nodeUrl === undefined ? {} : { node: running.nodeUrl }),
      epoch: elected.ownership.epoch,
    }).catch((error) => log.log("warn", "could not publish in etcd", { error: String(error) }));
    for (const uri of running.uris) console.log(uri);
    if (running.nodeUrl !== undefined) console.log(`node ${running.nodeUrl}`);
    for (const line of running.statusLines ?? []) console.log(line);
    const code = await untilStopOrFenced(running, stopSignal, onFenced, log);
    await running.stop();
    return code;
  } finally {
    // Leaving the election at the end lets a standby take over at once, not a lease later.
    await elected?.leave();
    stopSignal.dispose();
  }
}

/** `--cluster`, `--cluster-key` and `--lease` as a plan; undefined without `--cluster`. */
function clusterPlan(
  values: { cluster?: string; "cluster-key"?: string; lease?: string },
  storage: string,
): ClusterPlan | undefined {
  if (values.cluster === undefined) {
    if (values["cluster-key"] !== undefined || values.lease !== undefined) {
      throw new UsageError("--cluster-key and --lease go with --cluster etcd://HOST:PORT");
    }
    return undefined;
  }
  let hosts: string[];
  try {
    hosts = parseClusterUrl(values.cluster);
  } catch (error) {
    throw new UsageError(`--cluster ${(error as Error).message}`);
  }
  const key = values["cluster-key"] ?? storage;
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(key)) {
    throw new UsageError(`--cluster-key must be 1 to 128 of A-Z a-z 0-9 . _ -, got "${key}"`);
  }
  let ttlSeconds = 5;
  if (values.lease !== undefined) {
    let ms: number;
    try {
      ms = parseDuration(values.lease);
    } catch (error) {
      throw new UsageError(`--lease ${(error as Error).message}`);
    }
    if (ms < 1000 || ms % 1000 !== 0) {
      throw new UsageError(
        `--lease must be whole seconds, at least 1s (etcd leases), got ${values.lease}`,
      );
    }
    ttlSeconds = ms / 1000;
  }
  return { hosts, key, ttlSeconds };
}

/** Exit code of an exporter that stopped because it was fenced. */
export const FENCED_EXIT = 3;

/**
 * Waits for a stop signal, or for the exporter to be fenced: with `exit` it then stops (exit
 * code FENCED_EXIT); with `stay` it keeps its status endpoint up (every request fails) until
 * signalled.
 */
async function untilStopOrFenced(
  running: Running,
  stop: StopSignal,
  onFenced: "exit" | "stay",
  log: Logger,
): Promise<number> {
  const fenced = new Promise<string>((resolve) => running.ownership.onFenced(resolve));
  const first = await Promise.race([
    stop.signal.then((signal) => ({ signal })),
    fenced.then((why) => ({ why })),
  ]);
  if ("signal" in first) {
    log.log("info", "shutting down", { signal: first.signal });
    return 0;
  }
  if (onFenced === "exit") {
    log.log("error", "fenced: stopping (--on-fenced exit)", { why: first.why });
    return FENCED_EXIT;
  }
  log.log("error", "fenced: staying up, refusing every request (--on-fenced stay)", {
    why: first.why,
  });
  log.log("info", "shutting down", { signal: await stop.signal });
  return 0;
}

export const serveCommand: Command = {
  name: "serve",
  summary: "assemble a storage from a topology file and serve it (NBD, dst node, status)",
  help,
  run,
};
