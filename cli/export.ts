/**
 * `dst export`: serves one block device over NBD on one or more listen addresses, prints the URI
 * clients use once it is ready, and shuts down gracefully on SIGTERM or SIGINT (stop accepting,
 * finish what is in flight, flush, close).
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { guard } from "../actors/block/guard.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { consoleLogger } from "../util/log.ts";
import { clientUri, type ListenAddress, parseListenUrl } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { RemoteNode } from "../actors/node/proxy.ts";
import { startStatusEndpoint, type StatusEndpoint } from "../status/endpoint.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { leafTree, remoteLeafState } from "../status/leaf.ts";
import { readSecret } from "./secret.ts";
import { untilStopSignal } from "./signals.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { nbdLimitFlags, nbdLimitHelp, nbdLimitsFrom } from "./nbd_flags.ts";
import type { NbdLimits } from "../nbd/limits.ts";
import { parseSize as parseBytes } from "../util/size.ts";

const help = `Usage: dst export --listen URL [--listen URL...] [--name NAME] [--read-only]
                  (--memory SIZE | --file PATH [--size SIZE] | --remote NODE-URL)
                  [--status HOST:PORT] [--nbd-max-connections N] [--nbd-max-handshakes N]
                  [--nbd-idle-timeout SECONDS] [--nbd-stall-timeout SECONDS]

Serves a block device over NBD and prints the URI clients connect to, one per listen address:
  nbd://HOST:PORT/NAME  or  nbd+unix:///NAME?socket=PATH

Options:
  --listen URL     where to accept clients: tcp://HOST:PORT (port 0 picks a free one) or
                   unix:///PATH; repeat to listen on several
  --name NAME      export name (default "dst"); the empty name also reaches it
  --memory SIZE    serve a sparse in-memory device of SIZE bytes (suffixes K, M, G, T: 64M, 1G)
  --file PATH      serve dst media in a file (or block device); created when missing
  --size SIZE      with --file: the data size of a new file (for an existing one, the size
                   it must have)
  --remote URL     serve a remote dst node (tcp://, unix:// or quic://); its size is
                   learned from the node
  --secret-file PATH  with --remote: the cluster secret (or set DST_SECRET)
  --ca PEM         with --remote quic://: CA certificates to trust
  --read-only      refuse writes (clients see a read-only export)
  --status HOST:PORT  serve the export's status page, JSON and /metrics there (printed after
                   the URIs; loopback is safest)
${nbdLimitHelp(19)}
  -h, --help       show this help

SIGTERM or SIGINT stops the server gracefully.

Example:
  dst export --listen tcp://127.0.0.1:10809 --memory 1G
  nbdinfo nbd://127.0.0.1:10809/dst`;

/** Parses "4096", "64M", "1G", "512KiB"; throws UsageError naming `flag` on anything else. */
export function parseSize(text: string, flag: string): number {
  try {
    return parseBytes(text);
  } catch (error) {
    throw new UsageError(`${flag} ${(error as Error).message}`);
  }
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
  readonly source:
    | { readonly kind: "memory"; readonly size: number }
    | { readonly kind: "file"; readonly path: string; readonly size: number | undefined }
    | {
      readonly kind: "remote";
      readonly url: string;
      readonly secretFile: string | undefined;
      readonly ca: string | undefined;
    };
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
    ...nbdLimitFlags,
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
    nbd: nbdLimitsFrom(values),
    source: values.remote !== undefined
      ? { kind: "remote", url: values.remote, secretFile: values["secret-file"], ca: values.ca }
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
  const log = consoleLogger("info", "dst export");
  let remote: RemoteNode | undefined;
  // Counts what NBD clients ask, for the status endpoint's /metrics.
  const device = new CountingBlockDevice(await openDevice(plan, (r) => remote = r));
  const description = plan.source.kind === "file"
    ? `dst file export ${plan.source.path}`
    : plan.source.kind === "remote"
    ? `dst remote node ${plan.source.url}`
    : `dst memory export (${plan.source.size} bytes)`;
  const server = new NbdServer({
    exports: [{ name: plan.name, device, description }],
    log,
    ...plan.nbd,
  });
  const stopped = untilStopSignal();
  const uris: string[] = [];
  let status: StatusEndpoint | undefined;
  try {
    for (const url of plan.urls) {
      const bound = await server.listen(url);
      uris.push(clientUri(bound.address, plan.name));
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
    const signal = await stopped.signal;
    log.log("info", "shutting down", { signal, connections: server.connections });
  } finally {
    await status?.shutdown();
    await server.close();
    await device.flush().catch(() => {});
    await device.close();
    for (const address of plan.listen) {
      if (address.transport === "unix") await Deno.remove(address.path).catch(() => {});
    }
    stopped.dispose();
  }
  return 0;
}

/** The device behind the export: a sparse memory device, or file media behind the guard. */
async function openDevice(
  plan: ExportPlan,
  onRemote?: (remote: RemoteNode) => void,
): Promise<BlockDevice> {
  const source = plan.source;
  if (source.kind === "memory") {
    return new MemoryBlockDevice({ size: source.size, readOnly: plan.readOnly });
  }
  if (source.kind === "remote") {
    const secret = await readSecret(source.secretFile);
    const caCerts = source.ca === undefined ? undefined : [await Deno.readTextFile(source.ca)];
    const remote = await RemoteNode.connect(source.url, {
      node: `export@${Deno.hostname()}`,
      logger: consoleLogger("info", "dst export"),
      ...(secret === undefined ? {} : { secret }),
      ...(caCerts === undefined ? {} : { tls: { caCerts } }),
    });
    onRemote?.(remote);
    return guard(remote, { readOnly: plan.readOnly });
  }
  const exists = await Deno.lstat(source.path).then(() => true, () => false);
  if (!exists) {
    if (source.size === undefined) {
      throw new UsageError(`${source.path} does not exist: give --size SIZE to create it`);
    }
    const created = await FileBlockDevice.create({ path: source.path, size: source.size });
    if (!plan.readOnly) return guard(created);
    await created.close();
  }
  return guard(
    await FileBlockDevice.open({
      path: source.path,
      readOnly: plan.readOnly,
      ...(source.size !== undefined ? { expectSize: source.size } : {}),
    }),
  );
}

export const exportCommand: Command = {
  name: "export",
  summary: "serve one block device (memory, file or a remote dst node) over NBD",
  help,
  run,
};
