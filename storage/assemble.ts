/**
 * Assembly: turns a checked topology into a running tree of block actors. Leaves are opened
 * (memory, file media, remote nodes — whose sizes are discovered here), mappings are built on
 * their children, and every node is hosted as an actor behind the shared guard, reached by ref.
 * Media paths are checked before anything is opened, and what was started is torn down again if
 * any part fails — actors stopped, devices closed, media files this assembly made removed — so a
 * bad topology leaves nothing behind.
 */
import { BlockClient, spawnBlockActor } from "../actors/block/actor.ts";
import type { BlockDevice } from "../actors/block/contract.ts";
import { guard } from "../actors/block/guard.ts";
import { combineInfo } from "../actors/block/info.ts";
import { LinearMapping } from "../actors/linear/linear.ts";
import { type LegStatus, type Mirror, spawnMirror } from "../actors/mirror/mod.ts";
import { DEFAULT_UNIT, spawnParity } from "../actors/parity/mod.ts";
import type { RemoteState } from "../actors/node/proxy.ts";
import type { Ownership } from "../actors/node/owner.ts";
import { mediaOf } from "../actors/block/media.ts";
import type { MediaDevice } from "../actors/block/contract.ts";
import type { ActorSystem } from "../actors/runtime/system.ts";
import type { DialOptions } from "../transport/dial.ts";
import { type Logger, silentLogger } from "../util/log.ts";
import type { StorageControl } from "./control.ts";
import { isUnreachable, type LeafOptions, offlineLeg, openLeaf, plannedMedia } from "./leaves.ts";
import { checkMedia } from "./media_check.ts";
import { type LegHost, mirrorControl } from "./mirror_control.ts";
import {
  childrenOf,
  legSizeProblem,
  type NodeSpec,
  parityLegProblem,
  type Topology,
  TopologyError,
} from "./topology.ts";
import { legView, mirrorState, type TreeNode, treeNode } from "./tree.ts";

export type { NodeState, TreeNode } from "./tree.ts";

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
   * How long a request to a remote leaf outside a mirror may wait for a lost node before EIO,
   * unless the leaf sets its own `ioTimeout` (default: the request's deadline, 30 s).
   */
  readonly ioTimeoutMs?: number;
  /**
   * Start mirrors even when a leg that cannot be reached may hold writes the others lack (see
   * actors/mirror/start.ts: what it risks).
   */
  readonly force?: boolean;
  /** Told every move of every mirror's legs (for the event history). */
  readonly onLegState?: (mirror: string, leg: LegStatus) => void;
  /** The exporter's claim on the remote nodes (fencing): mirrors are fenced with it. */
  readonly ownership?: Ownership;
}

export interface Storage {
  /** The storage as a block device (a client of the root actor). */
  readonly device: BlockDevice;
  readonly tree: TreeNode;
  /** Maintenance actions on the running storage (suspend, resume, verify, ...). */
  readonly control: StorageControl;
  /** Media files this assembly created (not there before it ran). */
  readonly created: readonly string[];
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
  const resolvePath = (path: string) =>
    path.startsWith("/") || options.baseDir === undefined ? path : `${options.baseDir}/${path}`;
  // Every media path is looked at before any is made or opened.
  const media = plannedMedia(topology, resolvePath);
  const problems = await checkMedia(media);
  if (problems.length > 0) throw new TopologyError(problems);

  const opened: BlockDevice[] = [];
  const created: string[] = [];
  /** Remote leaves tell their mirror when their link is back. */
  const linkHooks = new Map<string, (state: RemoteState) => void>();
  const mirrors = new Map<string, Mirror>();
  /** Each mirror's leg nodes in the status tree, changed as legs are added and removed. */
  const legTreesOf = new Map<Mirror, TreeNode[]>();
  const legOf = new Map<string, string>();
  /** Parity mappings: their legs are fixed (why, for the refusal). */
  const fixedLegs = new Map<string, string>();
  const leafOptions: LeafOptions = {
    node: options.node,
    logger,
    resolvePath,
    onLinkState: (name, state) => linkHooks.get(name)?.(state),
    ...(options.secret === undefined ? {} : { secret: options.secret }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.connectTimeoutMs === undefined
      ? {}
      : { connectTimeoutMs: options.connectTimeoutMs }),
    ...(options.ioTimeoutMs === undefined ? {} : { ioTimeoutMs: options.ioTimeoutMs }),
    ...(options.ownership === undefined ? {} : { ownership: options.ownership }),
  };

  const actors: BlockDevice[] = [];
  /** Hosts `device` as an actor; the actor is stopped again if it cannot be reached. */
  const asActor = async (name: string, device: BlockDevice): Promise<BlockDevice> => {
    const ref = spawnBlockActor(options.system, guard(device), { name: `storage.${name}` });
    try {
      const client = await BlockClient.connect(options.system, ref);
      actors.push(client);
      return client;
    } catch (error) {
      options.system.stop(ref);
      await options.system.terminated(ref);
      throw error;
    }
  };
  /** A mirror's leg whose link drops leaves at once; when the link is back it is judged. */
  const hookLink = (leg: string, mirror: Mirror) =>
    linkHooks.set(leg, (state) => {
      if (state === "connected") mirror.legReachable(leg);
      else if (state === "connecting") mirror.legLost(leg, "link to the node lost");
    });

  const build = async (name: string, parent?: NodeSpec): Promise<Built> => {
    const spec = topology.nodes[name]!;
    if (spec.kind !== "linear" && spec.kind !== "mirror" && spec.kind !== "parity") {
      // Legs of a mirror or parity fail fast when their link drops: the others serve.
      const underLegs = parent?.kind === "mirror" || parent?.kind === "parity";
      const leaf = await openLeaf(name, spec, underLegs, leafOptions);
      opened.push(leaf.device);
      if (leaf.created !== undefined) created.push(leaf.created);
      const media = mediaOf(leaf.device);
      return {
        device: await asActor(name, leaf.device),
        tree: leaf.tree,
        ...(media === undefined ? {} : { media }),
      };
    }
    const children = spec.kind === "linear"
      ? await buildAll(childrenOf(spec).names, spec)
      : await buildLegs(spec.legs, spec);
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
        tree: treeNode(name, spec, linear.info().size, trees, state),
      };
    }
    const sizes = spec.legs.map((leg, i) => [leg, children[i]!.device.info().size] as const);
    const problem = spec.kind === "parity"
      ? parityLegProblem(name, spec.unit ?? DEFAULT_UNIT, sizes)
      : legSizeProblem(name, sizes);
    if (problem !== undefined) throw new TopologyError([problem]);
    const common = {
      name: `storage.${name}`,
      names: spec.legs,
      logger,
      media: children.map((c) => c.media),
      ...(options.ownership === undefined
        ? {}
        : { onFenced: (record: { why: string }) => options.ownership!.fence(record.why) }),
      ...(options.force === undefined ? {} : { force: options.force }),
      ...(options.onLegState === undefined
        ? {}
        : { onLegState: (leg: LegStatus) => options.onLegState!(name, leg) }),
      ...(spec.legTimeoutMs === undefined ? {} : { legTimeoutMs: spec.legTimeoutMs }),
      ...(spec.chunkSize === undefined ? {} : { chunkSize: spec.chunkSize }),
      ...(spec.resync === undefined ? {} : {
        pace: {
          ...(spec.resync.floor === undefined ? {} : { floorBytesPerSec: spec.resync.floor }),
          ...(spec.resync.ceiling === undefined ? {} : { ceilingBytesPerSec: spec.resync.ceiling }),
          ...(spec.resync.parallel === undefined ? {} : { parallel: spec.resync.parallel }),
        },
      }),
    };
    const spawned = spec.kind === "parity"
      ? spawnParity(options.system, devices, {
        ...common,
        ...(spec.unit === undefined ? {} : { unit: spec.unit }),
      })
      : spawnMirror(options.system, devices, {
        ...common,
        ...(spec.readPolicy === undefined ? {} : { readPolicy: spec.readPolicy }),
      });
    const mirror = await spawned.catch((error) => {
      throw new TopologyError([`nodes.${name}: ${(error as Error).message}`]);
    });
    actors.push(mirror.device);
    mirrors.set(name, mirror);
    if (spec.kind === "parity") {
      fixedLegs.set(
        name,
        "a parity storage keeps its legs (its stripes span exactly these): " +
          "replace a leg's media instead, or mark the leg dirty to rebuild it from the others",
      );
    }
    options.ownership?.onFenced((why) => mirror.fence(why));
    spec.legs.forEach((leg) => {
      legOf.set(leg, name);
      hookLink(leg, mirror);
    });
    const legTrees = [...trees];
    const mirrorTree = treeNode(
      name,
      spec,
      mirror.info().size,
      legTrees,
      () => mirrorState(mirror, spec.kind === "parity" ? spec.legs.length - 1 : 1),
    );
    // Each leg's node shows its place in the mirror (state, generations, resync) over its own.
    legTrees.forEach((t, i) => (legTrees[i] = legView(t, mirror)));
    legTreesOf.set(mirror, legTrees);
    return { device: mirror.device, tree: mirrorTree };
  };

  const buildAll = async (names: readonly string[], parent: NodeSpec): Promise<Built[]> => {
    const built: Built[] = [];
    for (const child of names) built.push(await build(child, parent));
    return built;
  };

  /**
   * A mirror's legs. A remote leg that cannot be reached now does not stop the assembly: it
   * stands in as a node that keeps dialling and must offer what the reachable legs offer, and
   * the mirror's start decides whether to go on without it (start.ts).
   */
  const buildLegs = async (names: readonly string[], parent: NodeSpec): Promise<Built[]> => {
    const built: (Built | undefined)[] = [];
    const unreachable: number[] = [];
    for (const [i, child] of names.entries()) {
      try {
        built.push(await build(child, parent));
      } catch (error) {
        if (topology.nodes[child]!.kind !== "remote" || !isUnreachable(error)) throw error;
        logger.log("warn", "mirror leg cannot be reached: the mirror judges starting without it", {
          node: child,
          error: (error as Error).message,
        });
        built.push(undefined);
        unreachable.push(i);
      }
    }
    const reached = built.filter((b): b is Built => b !== undefined).map((b) => b.device.info());
    if (reached.length === 0) {
      throw new TopologyError([`nodes: no leg of the mirror can be reached (${names.join(", ")})`]);
    }
    const expect = { ...combineInfo(reached), size: Math.min(...reached.map((i) => i.size)) };
    for (const i of unreachable) {
      const child = names[i]!;
      const leaf = offlineLeg(child, topology.nodes[child]!, expect, leafOptions);
      opened.push(leaf.device);
      built[i] = {
        device: await asActor(child, leaf.device),
        tree: leaf.tree,
        ...(leaf.media === undefined ? {} : { media: leaf.media }),
      };
    }
    return built as Built[];
  };

  const legHost: LegHost = {
    names: new Set(Object.keys(topology.nodes)),
    paths: new Map(
      Object.entries(topology.nodes).flatMap(([name, spec]) =>
        spec.kind === "file" ? [[resolvePath(spec.path), name] as const] : []
      ),
    ),
    resolvePath,
    open: (name, spec) => openLeaf(name, spec, true, leafOptions),
    host: asActor,
    joined: (mirrorName, mirror, name, leaf) => {
      opened.push(leaf.device);
      legTreesOf.get(mirror)?.push(legView(leaf.tree, mirror));
      hookLink(name, mirror);
      legOf.set(name, mirrorName);
    },
    removed: (mirror, leg) => {
      const legTrees = legTreesOf.get(mirror);
      const at = legTrees?.findIndex((t) => t.name === leg) ?? -1;
      if (at >= 0) legTrees!.splice(at, 1);
      linkHooks.delete(leg);
    },
  };

  try {
    const root = await build(topology.storage);
    return {
      device: root.device,
      tree: root.tree,
      control: mirrorControl(mirrors, legOf, legHost, fixedLegs),
      created,
      close: async () => {
        await root.device.close();
        await Promise.allSettled(opened.map((d) => d.close()));
      },
    };
  } catch (error) {
    for (const client of actors.reverse()) await client.close().catch(() => {});
    await Promise.allSettled(opened.map((d) => d.close()));
    // Media this assembly made is not left behind by a storage that never ran.
    for (const path of created) await Deno.remove(path).catch(() => {});
    throw error;
  }
}
