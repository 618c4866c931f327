/**
 * `dst export`: serves one block device over NBD on one or more listen addresses, prints the URI
 * clients use once it is ready, and shuts down gracefully on SIGTERM or SIGINT (stop accepting,
 * finish what is in flight, flush, close).
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { guard } from "../actors/block/guard.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { consoleLogger, type Logger } from "../util/log.ts";
import { clientUri, type ListenAddress, parseListenUrl } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { RemoteNode } from "../actors/node/proxy.ts";
import { Ownership } from "../actors/node/owner.ts";
import { startStatusEndpoint, type StatusEndpoint } from "../status/endpoint.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { leafTree, remoteLeafState } from "../status/leaf.ts";
import { readSecret } from "./secret.ts";
import { SHUTDOWN_HELP, shutdownTimeout, type StopSignal, untilStopSignal } from "./signals.ts";
import { type PlannedListen, preflight, requireSizeForNew, statusListenUrl } from "./preflight.ts";
import { parseDuration } from "../util/duration.ts";
import { osError, withOsContext } from "../util/os_error.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { LOG_HELP } from "./global.ts";
import { nbdLimitFlags, nbdLimitHelp, nbdLimitsFrom } from "./nbd_flags.ts";
import type { NbdLimits } from "../nbd/limits.ts";
import { parseSize as parseBytes } from "../util/size.ts";
import { loadNbdTls, type NbdTls, type NbdTlsFiles } from "../nbd/tls.ts";
import { tlsFilesFrom, tlsFlags, tlsHelp } from "./tls_flags.ts";
import { FENCED_EXIT } from "./serve.ts";

const help = `Usage: dst export --listen URL [--listen URL...] [--name NAME] [--read-only]
                  (--memory SIZE | --file PATH [--size SIZE] |
                   --remote NODE-URL [--io-timeout DURATION])
                  [--status HOST:PORT] [--shutdown-timeout DURATION]
                  [--nbd-max-connections N] [--nbd-max-handshakes N]
                  [--nbd-idle-timeout SECONDS] [--nbd-stall-timeout SECONDS]
                  [--tls on|require --tls-cert PEM --tls-key PEM [--tls-ca PEM]]

Serves a block device over NBD and prints the URI clients connect to, one per listen address:
  nbd://HOST:PORT/NAME  or  nbd+unix:///NAME?socket=PATH  (nbds with --tls require)

Options:
  --listen URL     where to accept clients: tcp://HOST:PORT (port 0 picks a free one) or
                   unix:///PATH; repeat to listen on several
  --name NAME      export name (default "dst"); the empty name also reaches it
  --memory SIZE    serve a sparse in-memory device of SIZE bytes (suffixes K, M, G, T: 64M, 1G)
  --file PATH      serve dst media in a file (or block device); created when missing
  --size SIZE      with --file: the data size of a new file (for an existing one, the size
                   it must have)
  --remote URL     serve a remote dst node (tcp://, unix:// or quic://); its size is
                   learned from the node. The node is claimed (unless --read-only): a
                   later export or serve of it takes over, and this one exits with code 3
  --secret-file PATH  with --remote: the cluster secret (or set DST_SECRET)
  --ca PEM         with --remote quic://: CA certificates to trust
  --io-timeout DURATION
                   with --remote: how long a request may wait for a lost node (link down,
                   reconnecting) before it fails with EIO (e.g. 5s; default 30s)
  --read-only      refuse writes (clients see a read-only export)
  --status HOST:PORT  serve the export's status page, JSON and /metrics there (printed after
                   the URIs; loopback is safest)
${SHUTDOWN_HELP}
${LOG_HELP}
${nbdLimitHelp(19)}
${tlsHelp(19)}
  -h, --help       show this help

SIGTERM or SIGINT stops the server gracefully; a second signal stops it at once.

Example:
  dst export --listen tcp://127.0.0.1:10809 --memory 1G
  nbdinfo nbd://127.0.0.1:10809/dst
  dst export --listen tcp://0.0.0.0:10809 --memory 1G --tls require \\
    --tls-cert server-cert.pem --tls-key server-key.pem
  nbdinfo 'nbds://HOST:10809/dst?tls-certificates=DIR'   (DIR holds ca-cert.pem)`;

/** Smallest device a bare number of bytes may ask for: less is taken for a missing unit. */
const MIN_BARE_BYTES = 2 ** 20;

/**
 * Parses a device size: "64M", "1G", "512KiB", or a bare number of bytes. A bare number under
 * 1 MiB ("--memory 100") is almost surely a missing unit, so it is refused with the guess; every
 * size must be whole 512-byte sectors. Throws UsageError naming `flag`.
 */
export function parseSize(text: string, flag: string): number {
  let bytes: number;
  try {
    bytes = parseBytes(text);
  } catch (error) {
    throw new UsageError(`${flag} ${(error as Error).message}`);
  }
  if (/^\s*\d+\s*$/.test(text) && bytes < MIN_BARE_BYTES) {
    throw new UsageError(
      `${flag} ${text.trim()}: a number without a unit is bytes, and ${bytes} bytes is too ` +
        `small for a disk; did you mean ${text.trim()}M? (units K, M, G, T: 64M, 1G)`,
    );
  }
  if (bytes % 512 !== 0) {
    throw new UsageError(
      `${flag} ${text.trim()}: ${bytes} bytes is not a whole number of 512-byte sectors ` +
        "(examples: 64M, 1G)",
    );
  }
  return bytes;
}

interface ExportPlan {
  readonly listen: ListenAddress[];
  readonly urls: string[];
  readonly name: string;
  readonly readOnly: boolean;
  /** HOST:PORT of the status endpoint, if any. */
  readonly status: string | undefined;
  /** Bounds on NBD clients the flags set; the rest stay at their defaults. */
  readonly nbd: Partial<NbdLimits>;
  /** TLS for NBD clients (--tls); undefined: plain text. */
  readonly tls: NbdTlsFiles | undefined;
  readonly source:
    | { readonly kind: "memory"; readonly size: number }
    | { readonly kind: "file"; readonly path: string; readonly size: number | undefined }
    | {
      readonly kind: "remote";
      readonly url: string;
      readonly secretFile: string | undefined;
      readonly ca: string | undefined;
      /** How long a request may wait for a lost node before EIO; undefined: its deadline. */
      readonly ioTimeoutMs: number | undefined;
    };
  /** How long a graceful stop may take. */
  readonly shutdownMs: number;
}

/** Turns the command line into a plan; every mistake is a UsageError (exit code 2). */
export function planExport(args: string[]): ExportPlan {
  const values = parseFlags(args, {
    listen: { type: "string", multiple: true },
    name: { type: "string" },
    memory: { type: "string" },
    file: { type: "string" },
    size: { type: "string" },
    remote: { type: "string" },
    "secret-file": { type: "string" },
    ca: { type: "string" },
    "read-only": { type: "boolean" },
    status: { type: "string" },
    "io-timeout": { type: "string" },
    "shutdown-timeout": { type: "string" },
    ...nbdLimitFlags,
    ...tlsFlags,
    help: { type: "boolean", short: "h" },
  });
  const urls = values.listen ?? [];
  if (urls.length === 0) throw new UsageError("--listen URL is required");
  const listen = urls.map((url) => {
    try {
      return parseListenUrl(url);
    } catch (error) {
      throw new UsageError(`--listen: ${(error as Error).message}`);
    }
  });
  const sources = ["memory", "file", "remote"].filter((k) => values[k as "memory"] !== undefined);
  if (sources.length !== 1) {
    throw new UsageError("give exactly one of --memory SIZE, --file PATH or --remote NODE-URL");
  }
  if (values.size !== undefined && values.file === undefined) {
    throw new UsageError("--size goes with --file (for --memory the size is its value)");
  }
  if (
    (values["secret-file"] !== undefined || values.ca !== undefined) && values.remote === undefined
  ) {
    throw new UsageError("--secret-file and --ca go with --remote");
  }
  if (values["io-timeout"] !== undefined && values.remote === undefined) {
    throw new UsageError("--io-timeout goes with --remote (local devices do not wait for a link)");
  }
  let ioTimeoutMs: number | undefined;
  try {
    if (values["io-timeout"] !== undefined) ioTimeoutMs = parseDuration(values["io-timeout"]);
  } catch (error) {
    throw new UsageError(`--io-timeout ${(error as Error).message}`);
  }
  const name = values.name ?? "dst";
  if (new TextEncoder().encode(name).length > 4096 || name.includes("\0")) {
    throw new UsageError("--name must be at most 4096 bytes and contain no NUL");
  }
  return {
    listen,
    urls,
    name,
    readOnly: values["read-only"] ?? false,
    status: values.status,
    shutdownMs: shutdownTimeout(values["shutdown-timeout"]),
    nbd: nbdLimitsFrom(values),
    tls: tlsFilesFrom(values),
    source: values.remote !== undefined
      ? {
        kind: "remote",
        url: values.remote,
        secretFile: values["secret-file"],
        ca: values.ca,
        ioTimeoutMs,
      }
      : values.file !== undefined
      ? {
        kind: "file",
        path: values.file,
        size: values.size === undefined ? undefined : parseSize(values.size, "--size"),
      }
      : { kind: "memory", size: parseSize(values.memory!, "--memory") },
  };
}

async function run(args: string[]): Promise<number> {
  const plan = planExport(args);
  const log = consoleLogger(undefined, "dst export");
  // Caught from the start, so a stop during startup is bounded by the deadline too.
  const stop = untilStopSignal({ log, deadlineMs: plan.shutdownMs });
  try {
    const source = plan.source;
    // Bad TLS material is reported, naming the file, before anything is opened.
    const tls = plan.tls === undefined ? undefined : await loadNbdTls(plan.tls);
    if (source.kind === "file") await requireSizeForNew(source.path, source.size);
    await preflight(
      plannedListens(plan),
      source.kind === "file" ? [{ path: source.path, from: "--file", size: source.size }] : [],
    );
    return await serve(plan, tls, log, stop);
  } finally {
    stop.dispose();
  }
}

/** Where the export will listen, for the preflight. */
function plannedListens(plan: ExportPlan): PlannedListen[] {
  return [
    ...plan.urls.map((url) => ({ url, from: "--listen" })),
    ...(plan.status === undefined ? [] : [{ url: statusListenUrl(plan.status), from: "--status" }]),
  ];
}

async function serve(
  plan: ExportPlan,
  tls: NbdTls | undefined,
  log: Logger,
  stop: StopSignal,
): Promise<number> {
  let remote: RemoteNode | undefined;
  let created: string | undefined;
  /** A remote node is claimed (fencing): a newer exporter taking it over stops this one. */
  const ownership = new Ownership(`export@${Deno.hostname()}/${Deno.pid}`);
  const fenced = new Promise<string>((resolve) => ownership.onFenced(resolve));
  const opened = await stop.step(
    plan.source.kind === "remote" ? `connecting to node ${plan.source.url}` : "opening the device",
    () => openDevice(plan, ownership, (r) => remote = r, (path) => created = path),
  );
  // Counts what NBD clients ask, for the status endpoint's /metrics.
  const device = new CountingBlockDevice(opened);
  const description = plan.source.kind === "file"
    ? `dst file export ${plan.source.path}`
    : plan.source.kind === "remote"
    ? `dst remote node ${plan.source.url}`
    : `dst memory export (${plan.source.size} bytes)`;
  const server = new NbdServer({
    exports: [{ name: plan.name, device, description }],
    log,
    ...plan.nbd,
    ...(tls === undefined ? {} : { tls }),
  });
  const uris: string[] = [];
  /** Unix sockets this export bound, removed when it stops (never another process's). */
  const sockets: string[] = [];
  let status: StatusEndpoint | undefined;
  let ready = false;
  let code = 0;
  try {
    for (const url of plan.urls) {
      const bound = await server.listen(url).catch((error) => {
        throw osError("listen on", url, error);
      });
      if (bound.address.transport === "unix") sockets.push(bound.address.path);
      uris.push(clientUri(bound.address, plan.name, tls?.mode === "require"));
      console.log(uris.at(-1));
    }
    if (plan.status !== undefined) {
      const source = plan.source;
      status = await startStatusEndpoint({
        name: plan.name,
        tree: leafTree({
          name: plan.name,
          kind: source.kind,
          size: device.info().size,
          ...(source.kind === "memory" ? {} : {
            address: source.kind === "file" ? source.path : source.url,
          }),
          ...(remote === undefined ? {} : { state: () => remoteLeafState(remote!) }),
        }),
        exports: uris,
        io: device.stats,
        listen: plan.status,
      });
      for (const line of status.lines) console.log(line);
    }
    ready = true;
    const first = await Promise.race([
      stop.signal.then((signal) => ({ signal })),
      fenced.then((why) => ({ why })),
    ]);
    if ("why" in first) {
      log.log("error", "fenced: a newer exporter owns the node; stopping", { why: first.why });
      code = FENCED_EXIT;
    } else {
      log.log("info", "shutting down", { signal: first.signal, connections: server.connections });
    }
  } finally {
    await stop.step("closing the status endpoint", async () => await status?.shutdown());
    await stop.step(
      () => `closing the NBD server (${server.connections} open connection(s))`,
      () => server.close(),
    );
    await stop.step(
      remote === undefined
        ? "flushing the device"
        : `flushing node ${remote.url} (${remote.state})`,
      () => device.flush().catch(() => {}),
    );
    await stop.step("closing the device", () => device.close());
    for (const path of sockets) await Deno.remove(path).catch(() => {});
    // Media made for an export that never served is not left behind.
    if (!ready && created !== undefined) await Deno.remove(created).catch(() => {});
  }
  return code;
}

/** The device behind the export: a sparse memory device, or file media behind the guard. */
async function openDevice(
  plan: ExportPlan,
  ownership: Ownership,
  onRemote: (remote: RemoteNode) => void,
  onCreated: (path: string) => void,
): Promise<BlockDevice> {
  const source = plan.source;
  if (source.kind === "memory") {
    return new MemoryBlockDevice({ size: source.size, readOnly: plan.readOnly });
  }
  if (source.kind === "remote") {
    const secret = await readSecret(source.secretFile);
    const caCerts = source.ca === undefined
      ? undefined
      : [await withOsContext("read --ca", source.ca, () => Deno.readTextFile(source.ca!))];
    const remote = await RemoteNode.connect(source.url, {
      node: `export@${Deno.hostname()}`,
      logger: consoleLogger(undefined, "dst export"),
      ...(source.ioTimeoutMs === undefined ? {} : { ioTimeoutMs: source.ioTimeoutMs }),
      ...(secret === undefined ? {} : { secret }),
      ...(caCerts === undefined ? {} : { tls: { caCerts } }),
      // A read-only export changes nothing, so it claims nothing (and fences nobody).
      ...(plan.readOnly ? {} : {
        owner: () => ownership.grant(),
        onFenced: (why: string) => ownership.fence(why),
      }),
    });
    onRemote(remote);
    if (!plan.readOnly) {
      // Claimed before anything changes it: the last export started owns the node.
      await ownership.attach(remote).catch(async (error) => {
        await remote.close();
        throw error;
      });
      ownership.hold();
    }
    return guard(remote, { readOnly: plan.readOnly });
  }
  const exists = await Deno.lstat(source.path).then(() => true, () => false);
  if (!exists) {
    if (source.size === undefined) {
      throw new UsageError(`${source.path} does not exist: give --size SIZE to create it`);
    }
    const created = await withOsContext(
      "create",
      source.path,
      () => FileBlockDevice.create({ path: source.path, size: source.size! }),
    );
    onCreated(source.path);
    if (!plan.readOnly) return guard(created);
    await created.close();
  }
  return guard(
    await withOsContext("open", source.path, () =>
      FileBlockDevice.open({
        path: source.path,
        readOnly: plan.readOnly,
        ...(source.size !== undefined ? { expectSize: source.size } : {}),
      })),
  );
}

export const exportCommand: Command = {
  name: "export",
  summary: "serve one block device (memory, file or a remote dst node) over NBD",
  help,
  run,
};
