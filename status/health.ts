/**
 * One verdict on a storage's health from its status tree, for scripts and probes: `dst status`
 * exits 0, 1 or 2 on it (as `mdadm --detail --test` does) and `/readyz` answers 503 when it is
 * down. Healthy: every node in sync. Degraded: the storage serves every block but with less
 * redundancy than it should (a leg out, suspended, rebuilding, being judged). Down: some blocks
 * cannot be served (a mirror with no leg in sync, a linear child lost, a remote leaf unreachable).
 */
import { elapsedText } from "../util/elapsed.ts";
import type { TreeJson } from "./tree.ts";

export type Health = "healthy" | "degraded" | "down";

export interface HealthReport {
  readonly health: Health;
  /** The exit code `dst status` answers with: 0 healthy, 1 degraded, 2 down. */
  readonly code: 0 | 1 | 2;
  /** One line per node that is not in sync, naming it and why (empty when healthy). */
  readonly reasons: readonly string[];
}

const RANK: Record<Health, 0 | 1 | 2> = { healthy: 0, degraded: 1, down: 2 };
const worst = (a: Health, b: Health): Health => RANK[a] >= RANK[b] ? a : b;

/** States in which a node serves nothing. */
const DOWN_STATES = new Set(["down", "out", "split-brain"]);

/** The health of the storage whose root is `tree`. */
export function healthOf(tree: TreeJson): HealthReport {
  const reasons: string[] = [];
  const health = nodeHealth(tree, reasons);
  return { health, code: RANK[health], reasons };
}

function nodeHealth(node: TreeJson, reasons: string[]): Health {
  let own: Health = "healthy";
  if (DOWN_STATES.has(node.state)) own = "down";
  else if (node.state !== "in-sync") {
    // A leaf still dialling its node serves nothing yet; a mapping still judging serves.
    own = node.children.length === 0 && node.state === "connecting" ? "down" : "degraded";
  }
  if (own !== "healthy") reasons.push(describe(node));
  let children: Health = "healthy";
  for (const child of node.children) children = worst(children, nodeHealth(child, reasons));
  // A mirror serves while one leg does (parity: all but one): a lost leg costs redundancy, not
  // data; the mapping's own state says when too few legs are left.
  if ((node.kind === "mirror" || node.kind === "parity") && children === "down") {
    children = "degraded";
  }
  return worst(own, children);
}

/** `leg1 is down (for 12s): link to the node lost` */
function describe(node: TreeJson): string {
  const detail = node.detail ?? {};
  const ms = typeof detail.inStateMs === "number" ? detail.inStateMs : undefined;
  const reason = typeof detail.reason === "string" ? detail.reason : node.facts.reason;
  const since = ms === undefined ? "" : ` for ${elapsedText(ms / 1000)}`;
  return `${node.name} (${node.kind}) is ${node.state}${since}${
    reason === undefined ? "" : `: ${reason}`
  }`;
}
