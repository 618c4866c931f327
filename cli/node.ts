/**
 * `dst node`: serves one storage node (file media or a sparse memory device, behind the guard)
 * to remote node proxies over tcp, unix or quic, prints the URL it listens on once ready, and
 * shuts down gracefully on SIGTERM or SIGINT (close the server, flush, close the media).
 */
import type { BlockDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { guard } from "../actors/block/guard.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { serveNode } from "../actors/node/server.ts";
import { startStatusEndpoint } from "../status/endpoint.ts";
import { CountingBlockDevice } from "../status/io.ts";
import { leafTree } from "../status/leaf.ts";
import { afterScheme, parseHostPort, schemeOf } from "../transport/url.ts";
import { consoleLogger, type Logger } from "../util/log.ts";
import { type Command, UsageError } from "./command.ts";
import { parseFlags } from "./flags.ts";
import { LOG_HELP } from "./global.ts";
import { parseSize } from "./export.ts";
import { LIMIT_FLAGS, LIMITS_HELP, type NodeLimits, parseLimits } from "./node_limits.ts";
import { readSecret } from "./secret.ts";
import { SHUTDOWN_HELP, shutdownTimeout, untilStopSignal } from "./signals.ts";
import { preflight, requireSizeForNew, statusListenUrl } from "./preflight.ts";
import { osError, withOsContext } from "../util/os_error.ts";

const help = `Usage: dst node --listen URL --data (PATH | memory:) [--size SIZE] [--id NAME]
                [--storage-id ID] [--read-only] [--secret-file PATH]
                [--cert PEM --key PEM] [--ca PEM] [--status HOST:PORT]
                [--exit-with-parent] [--shutdown-timeout DURATION] [LIMITS]

Serves one storage node to remote node proxies and prints the URL it listens on (with the real
port when 0 was given) once ready.

Options:
  --listen URL        tcp://HOST:PORT, unix:///PATH or quic://HOST:PORT (port 0 picks one)
  --data PATH         dst media in a file or block device: opened (metadata validated) when it
                      exists, created when it does not (then --size is required);
                      "memory:" serves a sparse in-memory device (needs --size)
  --size SIZE         data size of new media (suffixes K, M, G, T); for existing media, the
                      size it must have
  --id NAME           this node's identity in the handshake (default: HOSTNAME/node)
  --storage-id ID     the storage this node belongs to (32 hex digits): new media join it,
                      existing media of another storage are refused
  --read-only         refuse writes (EPERM)
  --secret-file PATH  the cluster secret (or set DST_SECRET); proxies without it are refused.
                      Without a secret the node listens only on loopback or a Unix socket.
  --cert PEM          quic: the server certificate (PEM file)
  --key PEM           quic: its private key (PEM file)
  --ca PEM            quic: CA certificates to trust (PEM file)
  --status HOST:PORT  serve this node's status page, JSON and /metrics there (printed after
                      the URL; loopback is safest)
  --exit-with-parent  stop gracefully when stdin closes: the process that started this node
                      (and holds its stdin) has exited, however it died (as nbdkit's flag)
${SHUTDOWN_HELP}
${LOG_HELP}
  -h, --help          show this help

Limits (what peers can make the node hold; a refusal is logged once per burst):
${LIMITS_HELP}

SIGTERM or SIGINT stops the node gracefully; a second signal stops it at once.

Example:
  DST_SECRET=s3cret dst node --listen tcp://127.0.0.1:7000 --data /var/lib/dst/a.img --size 1G`;

const SCHEMES = ["tcp", "unix", "quic"];

export interface NodePlan {
  readonly listen: string;
  readonly data: { readonly kind: "memory" } | { readonly kind: "file"; readonly path: string };
  readonly size: number | undefined;
  readonly id: string | undefined;
  readonly storageId: string | undefined;
  readonly readOnly: boolean;
  readonly secretFile: string | undefined;
  readonly tls: { readonly cert?: string; readonly key?: string; readonly ca?: string };
  /** HOST:PORT of the status endpoint, if any. */
  readonly status: string | undefined;
  readonly limits: NodeLimits;
  /** How long a graceful stop may take. */
  readonly shutdownMs: number;
  /** Stop when stdin reaches its end (the parent holding it is gone). */
  readonly exitWithParent: boolean;
}

/** Turns the command line into a plan; every mistake is a UsageError (exit code 2). */
export function planNode(args: string[]): NodePlan {
  const values = parseFlags(args, {
    listen: { type: "string" },
    data: { type: "string" },
    size: { type: "string" },
    id: { type: "string" },
    "storage-id": { type: "string" },
    "read-only": { type: "boolean" },
    "secret-file": { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    status: { type: "string" },
    "exit-with-parent": { type: "boolean" },
    ...LIMIT_FLAGS,
    "shutdown-timeout": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.listen === undefined) throw new UsageError("--listen URL is required");
  const listen = values.listen;
  const scheme = checkListenUrl(listen);
  if (values.data === undefined || values.data === "") {
    throw new UsageError("--data PATH is required (or --data memory: for a memory node)");
  }
  const data = values.data === "memory:"
    ? { kind: "memory" as const }
    : { kind: "file" as const, path: values.data };
  const size = values.size === undefined ? undefined : parseSize(values.size, "--size");
  if (data.kind === "memory" && size === undefined) {
    throw new UsageError("--data memory: needs --size SIZE");
  }
  const storageId = values["storage-id"];
  if (storageId !== undefined && !/^[0-9a-f]{32}$/.test(storageId)) {
    throw new UsageError(`--storage-id must be 32 lowercase hex digits, got "${storageId}"`);
  }
  if (values.id !== undefined && (values.id === "" || values.id.length > 256)) {
    throw new UsageError("--id must be 1 to 256 characters");
  }
  if (scheme === "quic" && (values.cert === undefined || values.key === undefined)) {
    throw new UsageError("quic:// needs --cert PEM and --key PEM (QUIC always runs TLS)");
  }
  if (scheme !== "quic" && (values.cert ?? values.key ?? values.ca) !== undefined) {
    throw new UsageError("--cert, --key and --ca go with a quic:// listen URL");
  }
  return {
    listen,
    data,
    size,
    id: values.id,
    storageId,
    readOnly: values["read-only"] ?? false,
    secretFile: values["secret-file"],
    tls: {
      ...(values.cert === undefined ? {} : { cert: values.cert }),
      ...(values.key === undefined ? {} : { key: values.key }),
      ...(values.ca === undefined ? {} : { ca: values.ca }),
    },
    status: values.status,
    limits: parseLimits(values),
    shutdownMs: shutdownTimeout(values["shutdown-timeout"]),
    exitWithParent: values["exit-with-parent"] ?? false,
  };
}

/** Resolves when stdin ends: the process holding its other end has exited. */
async function stdinClosed(): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) { /* the parent sends nothing */ }
  } catch {
    // a broken pipe is an end too
  }
}

/** Checks the listen URL's shape; returns its scheme. */
function checkListenUrl(url: string): string {
  let scheme: string;
  try {
    scheme = schemeOf(url);
    if (!SCHEMES.includes(scheme)) throw new Error(`unknown scheme "${scheme}"`);
    if (scheme === "unix") afterScheme(url, scheme);
    else parseHostPort(url, scheme);
  } catch (error) {
    throw new UsageError(
      `--listen ${url}: ${(error as Error).message}; ` +
        "expected tcp://HOST:PORT, unix:///PATH or quic://HOST:PORT",
    );
  }
  return scheme;
}

/** True for a Unix socket or a loopback host: reachable from this machine only. */
export function isLocalOnly(url: string): boolean {
  const scheme = schemeOf(url);
  if (scheme === "unix") return true;
  const { hostname } = parseHostPort(url, scheme);
  return /^127\.\d+\.\d+\.\d+$/.test(hostname) || hostname === "::1" || hostname === "localhost";
}

async function readPem(path: string, flag: string): Promise<string> {
  return await withOsContext(`read ${flag}`, path, () => Deno.readTextFile(path));
}

/** The node's device behind the guard, and the storage id it announces. */
async function openDevice(
  plan: NodePlan,
  log: Logger,
  onCreated: (path: string) => void,
): Promise<{ device: BlockDevice; storageId: string | undefined }> {
  if (plan.data.kind === "memory") {
    const device = new MemoryBlockDevice({ size: plan.size!, readOnly: plan.readOnly });
    return { device: guard(device), storageId: plan.storageId };
  }
  const path = plan.data.path;
  const exists = await Deno.lstat(path).then(() => true, () => false);
  if (!exists) {
    if (plan.size === undefined) {
      throw new UsageError(`${path} does not exist: give --size SIZE to create it`);
    }
    const size = plan.size;
    const created = await withOsContext("create", path, () =>
      FileBlockDevice.create({
        path,
        size,
        ...(plan.storageId === undefined ? {} : { storageId: plan.storageId }),
      }));
    onCreated(path);
    log.log("info", "created media", { path, size: plan.size, storageId: created.meta.storageId });
    if (!plan.readOnly) return { device: guard(created), storageId: created.meta.storageId };
    await created.close();
  }
  const opened = await FileBlockDevice.open({
    path,
    readOnly: plan.readOnly,
    ...(plan.size === undefined ? {} : { expectSize: plan.size }),
    ...(plan.storageId === undefined ? {} : { expectStorageId: plan.storageId }),
  }).catch((error: Error) => {
    const wrapped = osError("open", path, error);
    throw wrapped === error ? new Error(`cannot open ${path}: ${error.message}`) : wrapped;
  });
  return { device: guard(opened), storageId: opened.meta.storageId };
}

async function run(args: string[]): Promise<number> {
  const plan = planNode(args);
  const log = consoleLogger(undefined, "dst node");
  const secret = await readSecret(plan.secretFile);
  if (secret === undefined) {
    if (!isLocalOnly(plan.listen)) {
      throw new Error(
        `no cluster secret: refusing to listen on ${plan.listen}; without a secret only a ` +
          "loopback address or a Unix socket is allowed (give --secret-file PATH or set DST_SECRET)",
      );
    }
    log.log("warn", "no cluster secret: listening on loopback only");
  }
  const tls = plan.tls.cert === undefined ? undefined : {
    cert: await readPem(plan.tls.cert, "--cert"),
    key: await readPem(plan.tls.key!, "--key"),
    ...(plan.tls.ca === undefined ? {} : { caCerts: [await readPem(plan.tls.ca, "--ca")] }),
  };

  // Signals are caught before the ready line, so a script may stop us as soon as it reads it.
  const stop = untilStopSignal({ log, deadlineMs: plan.shutdownMs });
  if (plan.exitWithParent) void stdinClosed().then(() => stop.request("parent exited"));
  let created: string | undefined;
  let ready = false;
  try {
    // Everything that can fail is checked before the media is made or opened.
    if (plan.data.kind === "file") await requireSizeForNew(plan.data.path, plan.size);
    await preflight(
      [
        { url: plan.listen, from: "--listen" },
        ...(plan.status === undefined
          ? []
          : [{ url: statusListenUrl(plan.status), from: "--status" }]),
      ],
      plan.data.kind === "file" ? [{ path: plan.data.path, from: "--data", size: plan.size }] : [],
    );
    const { device: media, storageId } = await stop.step(
      "opening the media",
      () => openDevice(plan, log, (path) => created = path),
    );
    // Counts what proxies ask of this node, for the status endpoint's /metrics.
    const device = new CountingBlockDevice(media);
    try {
      const node = plan.id ?? `${Deno.hostname()}/node`;
      const server = await serveNode(plan.listen, device, {
        node,
        logger: log,
        ...plan.limits,
        ...(storageId === undefined ? {} : { storageId }),
        ...(secret === undefined ? {} : { secret }),
        ...(tls === undefined ? {} : { tls }),
      }).catch((error) => {
        throw osError("listen on", plan.listen, error);
      });
      try {
        const info = device.info();
        const status = plan.status === undefined ? undefined : await startStatusEndpoint({
          name: node,
          tree: leafTree({
            name: node,
            kind: plan.data.kind,
            size: info.size,
            address: server.url,
            state: () => ({
              state: "in-sync",
              detail: {
                ...server.stats,
                // Who may change this node now (fencing): the highest grant it made.
                ownerEpoch: server.grant.epoch,
                ...(server.grant.label === "" ? {} : { owner: server.grant.label }),
                readOnly: info.readOnly,
                ...(storageId === undefined ? {} : { storageId }),
              },
            }),
          }),
          exports: [server.url],
          io: device.stats,
          listen: plan.status,
        });
        try {
          log.log("info", "serving", {
            node,
            data: plan.data.kind === "memory" ? "memory:" : plan.data.path,
            size: info.size,
            readOnly: info.readOnly,
            storageId: storageId ?? null,
          });
          console.log(server.url);
          for (const line of status?.lines ?? []) console.log(line);
          ready = true;
          const signal = await stop.signal;
          log.log("info", "shutting down", { signal, links: server.stats.links });
        } finally {
          await stop.step("closing the status endpoint", async () => await status?.shutdown());
        }
      } finally {
        await stop.step(
          () => `closing the node server (${server.stats.links} links)`,
          () => server.close(),
        );
      }
    } finally {
      await stop.step("flushing the media", () => device.flush().catch(() => {}));
      await stop.step("closing the media", () => device.close());
    }
  } finally {
    // Media made for a node that never served is not left behind.
    if (!ready && created !== undefined) await Deno.remove(created).catch(() => {});
    stop.dispose();
  }
  return 0;
}

export const nodeCommand: Command = {
  name: "node",
  summary: "serve a storage node (file media or memory) to remote proxies over tcp, unix, quic",
  help,
  run,
};
