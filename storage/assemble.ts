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
import { LinearMapping } from "../actors/linear/linear.ts";
import {
  type ActionDone,
  type LegStatus,
  type Mirror,
  type MirrorAction,
  spawnMirror,
} from "../actors/mirror/mod.ts";
import { RemoteNode, type RemoteNodeOptions, type RemoteState } from "../actors/node/proxy.ts";
import { combineInfo } from "../actors/block/info.ts";
import { mediaOf } from "../actors/block/media.ts";
import type { MediaDevice } from "../actors/block/contract.ts";
import type { ActorSystem } from "../actors/runtime/system.ts";
import type { DialOptions } from "../transport/dial.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import {
  ControlError,
  type ControlResult,
  type LegSpec,
  type NodeStateName,
  type StorageControl,
} from "./control.ts";
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
  /**
   * Start mirrors even when a leg that cannot be reached may hold writes the others lack (see
   * actors/mirror/start.ts: what it risks).
   */
  readonly force?: boolean;
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
  const mirrors = new Map<string, Mirror>();
  /** Each mirror's leg nodes in the status tree, changed as legs are added and removed. */
  const legTreesOf = new Map<Mirror, TreeNode[]>();
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

  const remoteOptions = (
    name: string,
    spec: NodeSpec & { kind: "remote" },
    parent: NodeSpec | undefined,
  ): RemoteNodeOptions => ({
    node: options.node,
    logger,
    connectTimeoutMs: spec.connectTimeoutMs ?? options.connectTimeoutMs ?? 10_000,
    // A mirror leg whose link drops fails at once, so the mirror runs degraded instead of
    // stalling client I/O; the bitmap and resync bring it back.
    ...(parent?.kind === "mirror" ? { holdMs: 0 } : {}),
    onState: (state: RemoteState) => linkHooks.get(name)?.(state),
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(spec.storageId === undefined ? {} : { expectStorageId: spec.storageId }),
  });
  const remoteBuilt = (name: string, spec: NodeSpec & { kind: "remote" }, remote: RemoteNode) => {
    opened.push(remote);
    return {
      device: remote,
      tree: node(name, spec, remote.info().size, [], () => ({
        state: remote.state === "connected"
          ? "in-sync" as const
          : remote.state === "connecting"
          ? "connecting" as const
          : "down" as const,
        detail: { ...remote.stats, checksum: remote.checksum ?? "none", peer: remote.peer },
      }), spec.url),
    };
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
        const remote = await RemoteNode.connect(spec.url, remoteOptions(name, spec, parent))
          .catch((error) => {
            throw new TopologyError([`nodes.${name}.url: ${(error as Error).message}`]);
          });
        logger.log("info", "remote node joined", {
          node: name,
          url: spec.url,
          size: remote.info().size,
          checksum: remote.checksum ?? "none",
        });
        return remoteBuilt(name, spec, remote);
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
    const names = childrenOf(spec).names;
    const children: (Built | undefined)[] = [];
    /** Remote legs of a mirror that cannot be reached now: the mirror decides (start.ts). */
    const unreachable = new Map<number, TopologyError>();
    for (const [i, child] of names.entries()) {
      try {
        children.push(await build(child, spec));
      } catch (error) {
        const childSpec = topology.nodes[child]!;
        if (spec.kind !== "mirror" || childSpec.kind !== "remote" || !isUnreachable(error)) {
          throw error;
        }
        logger.log("warn", "mirror leg cannot be reached: the mirror judges starting without it", {
          node: child,
          url: childSpec.url,
          error: (error as Error).message,
        });
        children.push(undefined);
        unreachable.set(i, error as TopologyError);
      }
    }
    if (unreachable.size === names.length) throw [...unreachable.values()][0]!;
    if (unreachable.size > 0) {
      // Each stands in for a node that must offer what the reachable legs offer.
      const reached = children.filter((c): c is Built => c !== undefined).map((c) =>
        c.device.info()
      );
      const expect = { ...combineInfo(reached), size: Math.min(...reached.map((i) => i.size)) };
      for (const i of unreachable.keys()) {
        const child = names[i]!;
        const childSpec = topology.nodes[child] as NodeSpec & { kind: "remote" };
        const remote = RemoteNode.offline(
          childSpec.url,
          expect,
          remoteOptions(child, childSpec, spec),
        );
        const built = remoteBuilt(child, childSpec, remote);
        children[i] = {
          device: await asActor(child, built.device),
          tree: built.tree,
          media: remote,
        };
      }
    }
    const built = children as Built[];
    const devices = built.map((c) => c.device);
    const trees = built.map((c) => c.tree);
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
      spec.legs.map((leg, i) => [leg, built[i]!.device.info().size] as const),
    );
    if (problem !== undefined) throw new TopologyError([problem]);
    const mirror = await spawnMirror(options.system, devices, {
      name: `storage.${name}`,
      names: spec.legs,
      logger,
      media: built.map((c) => c.media),
      ...(options.force === undefined ? {} : { force: options.force }),
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
    }).catch((error) => {
      throw new TopologyError([`nodes.${name}: ${(error as Error).message}`]);
    });
    actors.push(mirror.device);
    mirrors.set(name, mirror);
    spec.legs.forEach((leg) => {
      legOf.set(leg, name);
      // A leg whose link drops leaves at once (it may come back as other media); when the
      // link is back it is judged and resynced.
      linkHooks.set(leg, linkHook(mirror, leg));
    });
    const legTrees = [...trees];
    const mirrorTree = node(name, spec, mirror.info().size, legTrees, () => mirrorState(mirror));
    // Each leg's node shows its place in the mirror (state, generations, resync) over its own.
    legTrees.forEach((t, i) => (legTrees[i] = legView(t, mirror)));
    legTreesOf.set(mirror, legTrees);
    return { device: mirror.device, tree: mirrorTree };
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
        await mirror.act({ action: "add-leg", leg: name, device, media });
        legTreesOf.get(mirror)?.push(legView(built.tree, mirror));
        linkHooks.set(name, linkHook(mirror, name));
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

/** A remote leaf that failed to connect (not one that was refused for what it is). */
function isUnreachable(error: unknown): boolean {
  return error instanceof TopologyError && /cannot reach node/.test(error.message);
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

/** Tells a mirror when its leg's link drops or comes back. */
function linkHook(mirror: Mirror, leg: string): (state: RemoteState) => void {
  return (state) => {
    if (state === "connected") mirror.legReachable(leg);
    else if (state === "connecting") mirror.legLost(leg, "link to the node lost");
  };
}

function mirrorState(mirror: Mirror): NodeState {
  const legs: LegStatus[] = mirror.legs();
  const inSync = mirror.inSync();
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
      storageId: mirror.storageId(),
      generations: mirror.generations(),
      outOfSyncBytes: Math.max(0, ...legs.map((l) => l.outOfSyncBytes)),
      ...(mirror.lastVerify() === undefined ? {} : { verify: mirror.lastVerify() }),
    },
  };
}

/** A leg's tree node, its state taken from the mirror's view of it. */
function legView(tree: TreeNode, mirror: Mirror): TreeNode {
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

type AddLeg = (mirror: Mirror, name: string, spec: NodeSpec) => Promise<void>;

/** The maintenance API over the storage's mirrors, by node name. */
function mirrorControl(
  mirrors: Map<string, Mirror>,
  legOf: Map<string, string>,
  removed: (mirror: Mirror, leg: string) => void,
  add: AddLeg,
): StorageControl {
  const mirrorOfLeg = (node: string): Mirror => {
    const m = mirrors.get(legOf.get(node) ?? "");
    if (m === undefined || !m.hasLeg(node)) {
      throw new ControlError(
        "unknown-node",
        `no mirror leg named "${node}" (legs: ${[...legOf.keys()].join(", ") || "none"})`,
      );
    }
    return m;
  };
  const mirrorNamed = (name: string): Mirror => {
    const m = mirrors.get(name);
    if (m === undefined) {
      throw new ControlError(
        "unknown-node",
        `no mirror named "${name}" (mirrors: ${[...mirrors.keys()].join(", ") || "none"})`,
      );
    }
    return m;
  };
  const act = async (what: () => Promise<ActionDone>, message?: string): Promise<ControlResult> => {
    let done: ActionDone;
    try {
      done = await what();
    } catch (error) {
      if (error instanceof ControlError) throw error;
      throw new ControlError("impossible", (error as Error).message);
    }
    return {
      ok: true as const,
      message: message ?? done.message,
      ...(done.verify === undefined ? {} : { verify: done.verify }),
    };
  };
  const onLeg = (n: string, action: MirrorAction) => act(() => mirrorOfLeg(n).act(action));
  return {
    nodes: () => [...mirrors.keys(), ...legOf.keys()],
    suspend: (n) => onLeg(n, { action: "suspend", leg: n }),
    resume: (n) => onLeg(n, { action: "resume", leg: n }),
    clean: (n, force = false) => onLeg(n, { action: "clean", leg: n, force }),
    dirty: (n) => onLeg(n, { action: "dirty", leg: n }),
    addLeg: (m, n, spec) =>
      act(async () => {
        await add(mirrorNamed(m), n, parseLegSpec(n, spec));
        return { message: `${n} added to ${m}: full resync` };
      }),
    removeLeg: (m, n) =>
      act(async () => {
        const mirror = mirrorNamed(m);
        if (!mirror.hasLeg(n)) throw new ControlError("unknown-node", `${m} has no leg "${n}"`);
        const done = await mirror.act({ action: "remove-leg", leg: n });
        legOf.delete(n);
        removed(mirror, n);
        return done;
      }, `${n} removed from ${m}`),
    verify: (m, repairFrom) =>
      act(() =>
        mirrorNamed(m).act({
          action: "verify",
          ...(repairFrom === undefined ? {} : { repairFrom }),
        })
      ),
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
