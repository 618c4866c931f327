/**
 * Who owns the storage, as status shows it: the exporter's owner epoch and label, whether it
 * was fenced and why, its recent ownership events (claims, raises, fencing) and, in a cluster,
 * the active exporter and the standbys etcd lists. Added to the root of the tree's detail; a
 * fenced exporter's root shows the state "fenced".
 */
import type { Ownership } from "../actors/node/owner.ts";
import type { ClusterView } from "../cluster/election.ts";
import type { NodeState, TreeNode } from "../storage/assemble.ts";

export interface ClusterStatus {
  readonly key: string;
  view(): ClusterView | undefined;
}

export function ownershipDetail(
  ownership: Ownership,
  cluster?: ClusterStatus,
): Record<string, unknown> {
  const view = cluster?.view();
  return {
    ownerEpoch: ownership.epoch,
    owner: ownership.label,
    ...(ownership.fenced === undefined ? {} : { fenced: ownership.fenced }),
    ownershipEvents: ownership.events.slice(-10),
    ...(cluster === undefined ? {} : {
      cluster: {
        key: cluster.key,
        role: ownership.fenced === undefined ? "active" : "fenced",
        ...(view?.active === undefined ? {} : { active: view.active }),
        standbys: view?.standbys ?? [],
        ...(view?.epoch === undefined ? {} : { epoch: view.epoch }),
      },
    }),
  };
}

/** `tree` with the ownership added to its root's detail (and "fenced" as its state once so). */
export function withOwnership(
  tree: TreeNode,
  ownership: Ownership,
  cluster?: ClusterStatus,
): TreeNode {
  return {
    ...tree,
    state: (): NodeState => {
      const own = tree.state();
      return {
        state: ownership.fenced === undefined ? own.state : "fenced",
        detail: { ...own.detail, ...ownershipDetail(ownership, cluster) },
      };
    },
  };
}
