/**
 * A one-node status tree for the processes that serve a single device (`dst node`,
 * `dst export`): the device is the tree's only node, and its detail is read live each time.
 */
import type { RemoteNode } from "../actors/node/proxy.ts";
import type { NodeState, TreeNode } from "../storage/assemble.ts";

export interface LeafOptions {
  readonly name: string;
  readonly kind: TreeNode["kind"];
  readonly size: number;
  readonly address?: string;
  /** The node's live state and detail (default: in-sync, as a device that serves is). */
  readonly state?: () => NodeState;
}

export function leafTree(options: LeafOptions): TreeNode {
  return {
    name: options.name,
    kind: options.kind,
    size: options.size,
    children: [],
    ...(options.address === undefined ? {} : { address: options.address }),
    state: options.state ?? (() => ({ state: "in-sync" })),
  };
}

/** A remote node's live state and counters, as the status tree shows them. */
export function remoteLeafState(remote: RemoteNode): NodeState {
  return {
    state: remote.state === "connected"
      ? "in-sync"
      : remote.state === "connecting"
      ? "connecting"
      : "down",
    detail: {
      ...remote.stats,
      checksum: remote.checksum ?? "none",
      ...(remote.peer === undefined ? {} : { peer: remote.peer }),
      ...(remote.storageId === undefined ? {} : { storageId: remote.storageId }),
      ...(remote.grant === undefined ? {} : { ownerEpoch: remote.grant.epoch }),
      ...(remote.fenced === undefined ? {} : { fenced: remote.fenced }),
    },
  };
}
