/**
 * The running storage as status sees it: one TreeNode per topology node, with its live state
 * read on demand, and how a mirror's (or parity's) and its legs' states are worked out from it.
 */
import type { LegStatus, Mirror } from "../actors/mirror/mod.ts";
import type { NodeStateName } from "./control.ts";
import type { NodeSpec } from "./topology.ts";

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

export function treeNode(
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

/** `need`: in-sync legs the mapping needs to serve (a mirror 1, parity all but one). */
export function mirrorState(mirror: Mirror, need = 1): NodeState {
  const legs: LegStatus[] = mirror.legs();
  const inSync = mirror.inSync();
  const state = inSync < need
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
export function legView(tree: TreeNode, mirror: Mirror): TreeNode {
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
