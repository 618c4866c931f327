/** The storage tree as plain JSON: what the status endpoint and `dst status` show. */
import type { TreeNode } from "../storage/assemble.ts";

export interface TreeJson {
  readonly name: string;
  readonly kind: string;
  readonly size: number;
  readonly address?: string;
  readonly state: string;
  readonly detail?: Record<string, unknown>;
  readonly children: TreeJson[];
}

export function treeJson(node: TreeNode): TreeJson {
  const { state, detail } = node.state();
  return {
    name: node.name,
    kind: node.kind,
    size: node.size,
    ...(node.address === undefined ? {} : { address: node.address }),
    state,
    ...(detail === undefined ? {} : { detail }),
    children: node.children.map(treeJson),
  };
}
