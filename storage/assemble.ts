/**
 * Assembly: turns a checked topology into a running tree of block actors. Leaves are opened
 * (memory, file media, remote nodes — whose sizes are discovered here), mappings are built on
 * their children, and every node is hosted as an actor behind the shared guard, reached by ref.
 * What was started is torn down again if any part fails, so a bad topology starts nothing.
 */
import { BlockClient, spawnBlockActor } from "../actors/block/actor.ts";
import type { BlockDevice } from "../actors/block/contract.ts";
import { FileBlockDevice } from "../actors/block/file.ts";
import { guard } from "../actors/block/guard.ts";
import { MemoryBlockDevice } from "../actors/block/memory.ts";
import { LinearMapping } from "../actors/mapping/linear.ts";
import { type LegStatus, MirrorMapping } from "../actors/mapping/mirror.ts";
import { RemoteNode } from "../actors/node/proxy.ts";
import type { ActorSystem } from "../actors/system.ts";
import type { DialOptions } from "../transport/dial.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import { formatSize } from "../util/size.ts";
import { ControlError, type NodeStateName, type StorageControl } from "./control.ts";
import { childrenOf, type NodeSpec, type Topology, TopologyError } from "./topology.ts";

export interface AssembleOptions {
  readonly system: ActorSystem;
  /** Our identity toward remote nodes. */
  readonly node: string;
  /** Relative file paths are resolved against this folder (the topology file's). */
  readonly baseDir?: string;
  readonly secret?: string | Uint8Array;
  readonly tls?: DialOptions["tls"];
  readonly logger?: Logger;
  /** How long to wait for each remote node at assembly (default 10 s). */
  readonly connectTimeoutMs?: number;
}

/** One node of the running tree, for status. */
export interface TreeNode {
  readonly name: string;
  readonly kind: NodeSpec["kind"];
  readonly size: number;
  /** A transport URL or a file path, where the node has one. */
  readonly address?: string;
  readonly children: readonly TreeNode[];
  /** Live state, read on demand. */
  state(): NodeState;
}

/**
 * Live state of one node. Mirror legs' `detail` carries: generations {current, bitmap, history},
 * storageId (the age on its media), outOfSyncBytes, resync (ResyncProgress) while one runs,
 * reason (why it left the in-sync set), and I/O counters (reads, writes, errors).
 */
export interface NodeState {
  readonly state: NodeStateName;
  readonly detail?: Record<string, unknown>;
}

export interface Storage {
  /** The storage as a block device (a client of the root actor). */
  readonly device: BlockDevice;
  readonly tree: TreeNode;
  /** Maintenance actions on the running storage (suspend, resume, verify, ...). */
  readonly control: StorageControl;
  /** Stops every actor and closes every leaf. */
  close(): Promise<void>;
}

interface Built {
  readonly device: BlockDevice;
  readonly tree: TreeNode;
}

export async function assemble(topology: Topology, options: AssembleOptions): Promise<Storage> {
  const logger = options.logger ?? silentLogger;
  const opened: BlockDevice[] = [];
  const resolvePath = (path: string) =>
    path.startsWith("/") || options.baseDir === undefined ? path : `${options.baseDir}/${path}`;

  const actors: BlockDevice[] = [];
  const asActor = async (name: string, device: BlockDevice): Promise<BlockDevice> => {
    const ref = spawnBlockActor(options.system, guard(device), { name: `storage.${name}` });
    const client = await BlockClient.connect(options.system, ref);
    actors.push(client);
    return client;
  };

  const leaf = async (
    name: string,
    spec: NodeSpec,
    parent: NodeSpec | undefined,
  ): Promise<Built> => {
    switch (spec.kind) {
      case "memory": {
        const device = new MemoryBlockDevice({ size: spec.size });
        return {
          device,
          tree: node(name, spec, device.info().size, [], () => ({ state: "in-sync" })),
        };
      }
      case "file": {
        const path = resolvePath(spec.path);
        const exists = await Deno.lstat(path).then(() => true, () => false);
        let device: FileBlockDevice;
        if (!exists) {
          if (spec.size === undefined) {
            throw new TopologyError([
              `nodes.${name}.size: ${path} does not exist; give a size to create it`,
            ]);
          }
          device = await FileBlockDevice.create({ path, size: spec.size });
        } else {
          device = await FileBlockDevice.open({
            path,
            ...(spec.size === undefined ? {} : { expectSize: spec.size }),
          });
        }
        opened.push(device);
        return {
          device,
          tree: node(name, spec, device.info().size, [], () => ({ state: "in-sync" }), path),
        };
      }
      case "remote": {
        const remote = await RemoteNode.connect(spec.url, {
          node: options.node,
          logger,
          connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
          // A mirror leg whose link drops fails at once, so the mirror runs degraded instead
          // of stalling client I/O; the bitmap and resync bring it back.
          ...(parent?.kind === "mirror" ? { holdMs: 0 } : {}),
          ...(options.secret === undefined ? {} : { secret: options.secret }),
          ...(options.tls === undefined ? {} : { tls: options.tls }),
          ...(spec.storageId === undefined ? {} : { expectStorageId: spec.storageId }),
        }).catch((error) => {
          throw new TopologyError([`nodes.${name}.url: ${(error as Error).message}`]);
        });
        opened.push(remote);
        logger.log("info", "remote node joined", {
          node: name,
          url: spec.url,
          size: remote.info().size,
          checksum: remote.checksum ?? "none",
        });
        return {
          device: remote,
          tree: node(name, spec, remote.info().size, [], () => ({
            state: remote.state === "connected"
              ? "in-sync"
              : remote.state === "connecting"
              ? "connecting"
              : "down",
            detail: { ...remote.stats, checksum: remote.checksum ?? "none", peer: remote.peer },
          }), spec.url),
        };
      }
      default:
        throw new Error(`${name}: ${spec.kind} is not a leaf`);
    }
  };

  const build = async (name: string, parent?: NodeSpec): Promise<Built> => {
    const spec = topology.nodes[name]!;
    if (spec.kind !== "linear" && spec.kind !== "mirror") {
      const built = await leaf(name, spec, parent);
      return { device: await asActor(name, built.device), tree: built.tree };
    }
    const children: Built[] = [];
    for (const child of childrenOf(spec).names) children.push(await build(child, spec));
    const devices = children.map((c) => c.device);
    const trees = children.map((c) => c.tree);
    if (spec.kind === "linear") {
      const linear = new LinearMapping(devices);
      const state = () => ({
        state: trees.every((t) => t.state().state === "in-sync")
          ? "in-sync" as const
          : "degraded" as const,
      });
      return {
        device: await asActor(name, linear),
        tree: node(name, spec, linear.info().size, trees, state),
      };
    }
    const sizes = children.map((c) => c.device.info().size);
    if (new Set(sizes).size > 1) {
      throw new TopologyError([
        `nodes.${name}.legs: legs differ in size (${
          spec.legs.map((l, i) => `${l} ${formatSize(sizes[i]!)}`).join(", ")
        }); give every leg of a mirror the same size`,
      ]);
    }
    const mirror = new MirrorMapping(devices, {
      names: spec.legs,
      logger,
      ...(spec.legTimeoutMs === undefined ? {} : { legTimeoutMs: spec.legTimeoutMs }),
    });
    const state = (): NodeState => {
      const legs: LegStatus[] = mirror.legs();
      const inSync = legs.filter((l) => l.state === "in-sync").length;
      return {
        state: inSync === 0 ? "down" : inSync < legs.length ? "degraded" : "in-sync",
        detail: { legs },
      };
    };
    return {
      device: await asActor(name, mirror),
      tree: node(name, spec, mirror.info().size, trees, state),
    };
  };

  try {
    const root = await build(topology.storage);
    return {
      device: root.device,
      tree: root.tree,
      control: pendingControl(),
      close: async () => {
        await root.device.close();
        await Promise.allSettled(opened.map((d) => d.close()));
      },
    };
  } catch (error) {
    for (const client of actors.reverse()) await client.close().catch(() => {});
    await Promise.allSettled(opened.map((d) => d.close()));
    throw error;
  }
}

function node(
  name: string,
  spec: NodeSpec,
  size: number,
  children: readonly TreeNode[],
  state: () => NodeState,
  address?: string,
): TreeNode {
  return {
    name,
    kind: spec.kind,
    size,
    children,
    state,
    ...(address === undefined ? {} : { address }),
  };
}

/** Placeholder until the mirror maintenance lands: every action is refused. */
function pendingControl(): StorageControl {
  const refuse = () =>
    Promise.reject(new ControlError("impossible", "maintenance is not available in this build"));
  return {
    nodes: () => [],
    suspend: refuse,
    resume: refuse,
    clean: refuse,
    dirty: refuse,
    addLeg: refuse,
    removeLeg: refuse,
    verify: refuse,
  };
}
