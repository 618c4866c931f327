/**
 * Opening the leaves of a storage — memory, file media, remote nodes (their sizes discovered
 * here) — for assembly and for legs added while serving. Each opened leaf says whether this
 * call created its media, so a step that fails later can remove exactly what it made.
 */
import type { BlockDevice, BlockInfo, MediaDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { RemoteNode, type RemoteState } from "../actors/node/proxy.ts";
import type { Ownership } from "../actors/node/owner.ts";
import type { DialOptions } from "../transport/dial.ts";
import type { Logger } from "../util/log.ts";
import { withOsContext } from "../util/os_error.ts";
import type { PlannedMedia } from "./media_check.ts";
import { type NodeSpec, type Topology, TopologyError } from "./topology.ts";
import { type TreeNode, treeNode } from "./tree.ts";

export interface LeafOptions {
  /** Our identity toward remote nodes. */
  readonly node: string;
  readonly secret?: string | Uint8Array;
  readonly tls?: DialOptions["tls"];
  readonly logger: Logger;
  /** How long to wait for each remote node (default 10 s). */
  readonly connectTimeoutMs?: number;
  /**
   * How long a request to a remote leaf outside a mirror may wait for a lost node before EIO,
   * unless the leaf says (default: the request's own deadline). Mirror legs fail at once.
   */
  readonly ioTimeoutMs?: number;
  /** A file path as given in the topology, made absolute. */
  resolvePath(path: string): string;
  /** Told when a remote leaf's link goes down or comes back. */
  onLinkState(name: string, state: RemoteState): void;
  /** The exporter's claim on its remote nodes (fencing); none: nodes are not claimed. */
  readonly ownership?: Ownership;
}

export interface OpenedLeaf {
  readonly device: BlockDevice;
  readonly tree: TreeNode;
  /** The media file this call created, to be removed if what it was for fails. */
  readonly created?: string;
}

/** The I/O timeout of a remote leaf: its own, else none for a mirror leg, else the default. */
export function leafIoTimeout(
  spec: Extract<NodeSpec, { kind: "remote" }>,
  underMirror: boolean,
  fallback: number | undefined,
): number | undefined {
  // A mirror leg whose link drops fails at once, so the mirror runs degraded instead of
  // stalling client I/O; the bitmap and resync bring it back.
  return spec.ioTimeout ?? (underMirror ? 0 : fallback);
}

type RemoteSpec = Extract<NodeSpec, { kind: "remote" }>;

function remoteOptions(name: string, spec: RemoteSpec, underMirror: boolean, options: LeafOptions) {
  const ioTimeoutMs = leafIoTimeout(spec, underMirror, options.ioTimeoutMs);
  return {
    node: options.node,
    logger: options.logger,
    connectTimeoutMs: spec.connectTimeoutMs ?? options.connectTimeoutMs ?? 10_000,
    ...(ioTimeoutMs === undefined ? {} : { ioTimeoutMs }),
    onState: (state: RemoteState) => options.onLinkState(name, state),
    ...(options.ownership === undefined ? {} : {
      owner: () => options.ownership!.grant(),
      onFenced: (why: string) => options.ownership!.fence(why),
    }),
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(spec.storageId === undefined ? {} : { expectStorageId: spec.storageId }),
  };
}

function remoteTree(name: string, spec: RemoteSpec, remote: RemoteNode): TreeNode {
  return treeNode(name, spec, remote.info().size, [], () => ({
    state: remote.state === "connected"
      ? "in-sync"
      : remote.state === "connecting"
      ? "connecting"
      : "down",
    detail: {
      ...remote.stats,
      checksum: remote.checksum ?? "none",
      peer: remote.peer,
      // The owner epoch this exporter holds on the node (fencing), and why it lost it.
      ...(remote.grant === undefined ? {} : { ownerEpoch: remote.grant.epoch }),
      ...(remote.fenced === undefined ? {} : { fenced: remote.fenced }),
    },
  }), spec.url);
}

/** A remote leaf that failed to connect (not one refused for what it is). */
export function isUnreachable(error: unknown): boolean {
  return error instanceof TopologyError && /cannot reach node/.test(error.message);
}

/**
 * A mirror leg whose node cannot be reached now: it stands in for a node that must offer
 * `expect` (what the reachable legs offer), and keeps dialling in the background.
 */
export function offlineLeg(
  name: string,
  spec: NodeSpec,
  expect: BlockInfo,
  options: LeafOptions,
): { device: BlockDevice; tree: TreeNode; media: MediaDevice } {
  if (spec.kind !== "remote") throw new Error(`${name}: only a remote leg can be offline`);
  const remote = RemoteNode.offline(spec.url, expect, remoteOptions(name, spec, true, options));
  options.ownership?.track(remote);
  return { device: remote, tree: remoteTree(name, spec, remote), media: remote };
}

/** The media files a topology opens or creates, for checks before anything is made. */
export function plannedMedia(
  topology: Topology,
  resolvePath: (path: string) => string,
): PlannedMedia[] {
  return Object.entries(topology.nodes).flatMap(([name, spec]) =>
    spec.kind === "file"
      ? [{ path: resolvePath(spec.path), from: `nodes.${name}.path`, size: spec.size }]
      : []
  );
}

export async function openLeaf(
  name: string,
  spec: NodeSpec,
  underMirror: boolean,
  options: LeafOptions,
): Promise<OpenedLeaf> {
  switch (spec.kind) {
    case "memory": {
      const device = new MemoryBlockDevice({ size: spec.size });
      return {
        device,
        tree: treeNode(name, spec, device.info().size, [], () => ({ state: "in-sync" })),
      };
    }
    case "file": {
      const path = options.resolvePath(spec.path);
      const exists = await Deno.lstat(path).then(() => true, () => false);
      let device: FileBlockDevice;
      if (!exists) {
        const size = spec.size;
        if (size === undefined) {
          throw new TopologyError([
            `nodes.${name}.size: ${path} does not exist; give a size to create it`,
          ]);
        }
        device = await withOsContext("create", path, () => FileBlockDevice.create({ path, size }));
      } else {
        device = await withOsContext("open", path, () =>
          FileBlockDevice.open({
            path,
            ...(spec.size === undefined ? {} : { expectSize: spec.size }),
          }));
      }
      return {
        device,
        tree: treeNode(name, spec, device.info().size, [], () => ({ state: "in-sync" }), path),
        ...(exists ? {} : { created: path }),
      };
    }
    case "remote": {
      const remote = await RemoteNode.connect(
        spec.url,
        remoteOptions(name, spec, underMirror, options),
      ).catch((error) => {
        throw new TopologyError([`nodes.${name}.url: ${(error as Error).message}`]);
      });
      // Claimed before anything reads or changes it: the node is this exporter's from now on.
      await options.ownership?.attach(remote).catch(async (error) => {
        await remote.close();
        throw new TopologyError([`nodes.${name}.url: ${(error as Error).message}`]);
      });
      options.logger.log("info", "remote node joined", {
        node: name,
        url: spec.url,
        size: remote.info().size,
        checksum: remote.checksum ?? "none",
      });
      return { device: remote, tree: remoteTree(name, spec, remote) };
    }
    default:
      throw new Error(`${name}: ${spec.kind} is not a leaf`);
  }
}
