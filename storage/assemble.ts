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
import { RemoteNode, type RemoteState } from "../actors/node/proxy.ts";
import { mediaOf } from "../actors/block/media.ts";
import type { MediaDevice } from "../actors/block/contract.ts";
import type { ActorSystem } from "../actors/system.ts";
import type { DialOptions } from "../transport/dial.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import { ControlError, type LegSpec, type NodeStateName, type StorageControl } from "./control.ts";
import {
  childrenOf,
  legSizeProblem,
  type NodeSpec,
  parseTopology,
  type Topology,
  TopologyError,
} from "./topology.ts";

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
  /** The leaf's media operations (called directly, beside the actor that serves its blocks). */
  readonly media?: MediaDevice;
}

export async function assemble(topology: Topology, options: AssembleOptions): Promise<Storage> {
  const logger = options.logger ?? silentLogger;
  const opened: BlockDevice[] = [];
  /** Remote leaves tell their mirror when their link is back. */
  const linkHooks = new Map<string, (state: RemoteState) => void>();
  const mirrors = new Map<string, MirrorMapping>();
  /** Each mirror's leg nodes in the status tree, changed as legs are added and removed. */
  const legTreesOf = new Map<MirrorMapping, TreeNode[]>();
  const legOf = new Map<string, string>();
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
          ...(parent?.kind === "mirror" ? { ioTimeoutMs: 0 } : {}),
          onState: (state: RemoteState) => linkHooks.get(name)?.(state),
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
      const media = mediaOf(built.device);
      return {
        device: await asActor(name, built.device),
        tree: built.tree,
        ...(media === undefined ? {} : { media }),
      };
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
    const problem = legSizeProblem(
      name,
      spec.legs.map((leg, i) => [leg, children[i]!.device.info().size] as const),
    );
    if (problem !== undefined) throw new TopologyError([problem]);
    const mirror = new MirrorMapping(devices, {
      names: spec.legs,
      logger,
      media: children.map((c) => c.media),
      ...(spec.legTimeoutMs === undefined ? {} : { legTimeoutMs: spec.legTimeoutMs }),
      ...(spec.readPolicy === undefined ? {} : { readPolicy: spec.readPolicy }),
      ...(spec.chunkSize === undefined ? {} : { chunkSize: spec.chunkSize }),
      ...(spec.resync === undefined ? {} : {
        pace: {
          ...(spec.resync.floor === undefined ? {} : { floorBytesPerSec: spec.resync.floor }),
          ...(spec.resync.ceiling === undefined ? {} : { ceilingBytesPerSec: spec.resync.ceiling }),
          ...(spec.resync.parallel === undefined ? {} : { parallel: spec.resync.parallel }),
        },
      }),
    });
    await mirror.start();
    mirrors.set(name, mirror);
    spec.legs.forEach((leg) => {
      legOf.set(leg, name);
      // A leg whose link drops leaves at once (it may come back as other media); when the
      // link is back it is judged and resynced.
      linkHooks.set(leg, (state) => {
        const index = mirror.legs().findIndex((l) => l.name === leg);
        if (state === "connected") mirror.legReachable(index);
        else if (state === "connecting") mirror.legLost(index, "link to the node lost");
      });
    });
    const legTrees = [...trees];
    const mirrorTree = node(name, spec, mirror.info().size, legTrees, () => mirrorState(mirror));
    // Each leg's node shows its place in the mirror (state, generations, resync) over its own.
    legTrees.forEach((t, i) => (legTrees[i] = legView(t, mirror)));
    legTreesOf.set(mirror, legTrees);
    return { device: await asActor(name, mirror), tree: mirrorTree };
  };

  try {
    const root = await build(topology.storage);
    return {
      device: root.device,
      tree: root.tree,
      control: mirrorControl(mirrors, legOf, (mirror, leg) => {
        const legTrees = legTreesOf.get(mirror);
        const at = legTrees?.findIndex((t) => t.name === leg) ?? -1;
        if (at >= 0) legTrees!.splice(at, 1);
      }, async (mirror, name, spec) => {
        const built = await leaf(name, spec, { kind: "mirror", legs: [] } as NodeSpec);
        const media = mediaOf(built.device);
        const device = await asActor(name, built.device);
        await mirror.addLeg(name, device, media);
        legTreesOf.get(mirror)?.push(legView(built.tree, mirror));
        linkHooks.set(name, (state) => {
          const index = mirror.legs().findIndex((l) => l.name === name);
          if (state === "connected") mirror.legReachable(index);
          else if (state === "connecting") mirror.legLost(index, "link to the node lost");
        });
        legOf.set(name, [...mirrors].find(([, m]) => m === mirror)![0]);
      }),
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

function mirrorState(mirror: MirrorMapping): NodeState {
  const legs: LegStatus[] = mirror.legs();
  const inSync = legs.filter((l) => l.state === "in-sync").length;
  const state = inSync === 0
    ? legs.some((l) => l.state === "split-brain") ? "split-brain" as const : "down" as const
    : legs.some((l) => l.state === "rebuilding")
    ? "rebuilding" as const
    : inSync < legs.length
    ? "degraded" as const
    : "in-sync" as const;
  return {
    state,
    detail: {
      legs,
      chunkSize: mirror.chunkSize,
      storageId: mirror.storageId,
      generations: mirror.generations,
      outOfSyncBytes: Math.max(0, ...legs.map((l) => l.outOfSyncBytes)),
    },
  };
}

/** A leg's tree node, its state taken from the mirror's view of it. */
function legView(tree: TreeNode, mirror: MirrorMapping): TreeNode {
  return {
    ...tree,
    state: (): NodeState => {
      const own = tree.state();
      const leg = mirror.legs().find((l) => l.name === tree.name);
      if (leg === undefined) return own;
      const state = leg.state === "out"
        ? (own.state === "connecting" || own.state === "down" ? "down" as const : "out" as const)
        : leg.state;
      return { state, detail: { ...own.detail, ...leg } };
    },
  };
}

type AddLeg = (mirror: MirrorMapping, name: string, spec: NodeSpec) => Promise<void>;

/** The maintenance API over the storage's mirrors, by node name. */
function mirrorControl(
  mirrors: Map<string, MirrorMapping>,
  legOf: Map<string, string>,
  removed: (mirror: MirrorMapping, leg: string) => void,
  add: AddLeg,
): StorageControl {
  const mirrorOfLeg = (node: string): MirrorMapping => {
    const m = mirrors.get(legOf.get(node) ?? "");
    if (m === undefined || !m.hasLeg(node)) {
      throw new ControlError(
        "unknown-node",
        `no mirror leg named "${node}" (legs: ${[...legOf.keys()].join(", ") || "none"})`,
      );
    }
    return m;
  };
  const mirrorNamed = (name: string): MirrorMapping => {
    const m = mirrors.get(name);
    if (m === undefined) {
      throw new ControlError(
        "unknown-node",
        `no mirror named "${name}" (mirrors: ${[...mirrors.keys()].join(", ") || "none"})`,
      );
    }
    return m;
  };
  const act = async (what: () => Promise<unknown>, message: string) => {
    try {
      await what();
    } catch (error) {
      if (error instanceof ControlError) throw error;
      throw new ControlError("impossible", (error as Error).message);
    }
    return { ok: true as const, message };
  };
  return {
    nodes: () => [...mirrors.keys(), ...legOf.keys()],
    suspend: (n) => act(() => mirrorOfLeg(n).suspend(n), `${n} suspended`),
    resume: (n) => act(() => mirrorOfLeg(n).resume(n), `${n} resumed`),
    clean: (n) => act(() => mirrorOfLeg(n).markClean(n), `${n} marked clean`),
    dirty: (n) => act(() => mirrorOfLeg(n).markDirty(n), `${n} marked dirty: full resync`),
    addLeg: (m, n, spec) =>
      act(() => add(mirrorNamed(m), n, parseLegSpec(n, spec)), `${n} added to ${m}`),
    removeLeg: (m, n) =>
      act(async () => {
        const mirror = mirrorNamed(m);
        if (!mirror.hasLeg(n)) throw new ControlError("unknown-node", `${m} has no leg "${n}"`);
        await mirror.removeLeg(n);
        legOf.delete(n);
        removed(mirror, n);
      }, `${n} removed from ${m}`),
    verify: (m) =>
      act(async () => {
        const { mismatches } = await mirrorNamed(m).verify();
        return mismatches;
      }, `${m} verified`),
  };
}

function parseLegSpec(name: string, spec: LegSpec): NodeSpec {
  try {
    const topology = parseTopology({
      storage: "m",
      nodes: { m: { kind: "mirror", legs: [name] }, [name]: spec },
    });
    return topology.nodes[name]!;
  } catch (error) {
    throw new ControlError("impossible", (error as Error).message);
  }
}
