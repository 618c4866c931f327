/**
 * The storage tree as plain JSON: what the status endpoint, the dashboard and `dst status` show.
 * Detail fields come from each node's live state and differ by kind and version; `nodeFacts`
 * picks out the ones the views know, tolerating any that are missing or shaped otherwise.
 */
import type { TreeNode } from "../storage/assemble.ts";
import type { IoSnapshot } from "./io.ts";
import type { ProcessInfo } from "./process.ts";
import { LATENCY_BUCKETS } from "../util/latency_histogram.ts";

export interface TreeJson {
  readonly name: string;
  readonly kind: string;
  readonly size: number;
  readonly address?: string;
  readonly state: string;
  /** Everything the node reported, as it reported it. */
  readonly detail?: Record<string, unknown>;
  /** The detail fields the views know, normalised (see {@link nodeFacts}). */
  readonly facts: NodeFacts;
  readonly children: TreeJson[];
}

/** The whole answer of GET /api/tree. */
export interface StatusJson {
  /** The storage's (or node's) name. */
  readonly name: string;
  /** Milliseconds since the epoch when this was taken. */
  readonly time: number;
  /** Where clients attach. */
  readonly exports: readonly string[];
  /** Counters of the device this process exports, when it counts them. */
  readonly io?: IoSnapshot;
  /** Whether control actions (suspend, resume, ...) are available here. */
  readonly control: boolean;
  /** Version, uptime and resources of the process serving this. */
  readonly process?: ProcessInfo;
  readonly tree: TreeJson;
}

/** Every state a node can report; the views colour and count these. */
export const NODE_STATES = [
  "in-sync",
  "degraded",
  "rebuilding",
  "judging",
  "suspended",
  "down",
  "split-brain",
  "connecting",
  "out",
  "fenced",
] as const;

export function treeJson(node: TreeNode): TreeJson {
  const { state, detail } = node.state();
  return {
    name: node.name,
    kind: node.kind,
    size: node.size,
    ...(node.address === undefined ? {} : { address: node.address }),
    state,
    ...(detail === undefined ? {} : { detail }),
    facts: nodeFacts({ size: node.size, ...(detail === undefined ? {} : { detail }) }),
    children: node.children.map(treeJson),
  };
}

/** The node called `name`, depth first; names are unique within a topology. */
export function findNode<T extends { name: string; children: readonly T[] }>(
  root: T,
  name: string,
): T | undefined {
  if (root.name === name) return root;
  for (const child of root.children) {
    const found = findNode(child, name);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The node that has `name` as a direct child. */
export function parentOf<T extends { name: string; children: readonly T[] }>(
  root: T,
  name: string,
): T | undefined {
  for (const child of root.children) {
    if (child.name === name) return root;
    const found = parentOf(child, name);
    if (found !== undefined) return found;
  }
  return undefined;
}

export interface ResyncFacts {
  /** "resync" or "verify". */
  readonly kind?: string;
  /** The leg data comes from. */
  readonly source?: string;
  readonly bytesLeft?: number;
  readonly bytesDone?: number;
  readonly totalBytes?: number;
  readonly rateBytesPerSec?: number;
  readonly etaSeconds?: number;
  /** 0..1 when it can be worked out. */
  readonly progress?: number;
}

export interface LegFacts {
  readonly name: string;
  readonly state: string;
  readonly reason?: string;
  readonly reads?: number;
  readonly writes?: number;
  readonly errors?: number;
  /** Totals over every resync the leg took: bytes settled and bytes actually moved. */
  readonly resyncedBytes?: number;
  readonly copiedBytes?: number;
  /** Milliseconds since the leg last moved (how long it has been down, say). */
  readonly inStateMs?: number;
  /** How long the leg took to answer the mirror, per operation (read, write, flush). */
  readonly latency?: Readonly<Record<string, LatencyFacts>>;
}

/** A latency histogram: cumulative counts per bucket bound (LATENCY_BUCKETS), then +Inf. */
export interface LatencyFacts {
  readonly count: number;
  readonly sumSeconds: number;
  readonly buckets: readonly number[];
}

/** The detail fields the views know, each present only when the node reported it sanely. */
export interface NodeFacts {
  readonly storageId?: string;
  /** Seconds since the storage's media were made, or since the current generation began. */
  readonly ageSeconds?: number;
  readonly generations?: Record<string, string>;
  readonly outOfSyncBytes?: number;
  readonly resync?: ResyncFacts;
  readonly checksum?: string;
  readonly checksumErrors?: number;
  readonly reconnects?: number;
  readonly resent?: number;
  readonly timeouts?: number;
  readonly peer?: string;
  readonly reason?: string;
  readonly legs?: readonly LegFacts[];
  /** What the mirror's last verify found: bytes differing, and those left unrepaired. */
  readonly verify?: { readonly mismatchedBytes: number; readonly unresolvedBytes: number };
  /** Other named counts (from `detail.counters`), e.g. writes that set bitmap bits. */
  readonly counters?: Record<string, number>;
  /** Any other numbers the node reported at the top of its detail (links, reads, ...). */
  readonly numbers?: Record<string, number>;
}

/** Top-level detail fields that have a place of their own in {@link NodeFacts}. */
const KNOWN = new Set([
  "storageId",
  "ageSeconds",
  "age",
  "generations",
  "outOfSyncBytes",
  "resync",
  "checksum",
  "checksumErrors",
  "reconnects",
  "resent",
  "timeouts",
  "peer",
  "reason",
  "legs",
  "counters",
  "verify",
]);

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) ? v : undefined;
const text = (v: unknown): string | undefined =>
  typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;

/** Picks the known fields out of a node's detail. */
export function nodeFacts(node: Pick<TreeJson, "size" | "detail">): NodeFacts {
  const d = node.detail ?? {};
  const facts: Record<string, unknown> = {};
  const put = (key: string, value: unknown) => {
    if (value !== undefined) facts[key] = value;
  };
  put("storageId", text(d.storageId));
  put("ageSeconds", num(d.ageSeconds) ?? num(d.age));
  if (isRecord(d.generations)) {
    const gens: Record<string, string> = {};
    for (const [k, v] of Object.entries(d.generations)) {
      const t = Array.isArray(v) ? v.map(text).filter((x) => x !== undefined).join(",") : text(v);
      if (t !== undefined) gens[k] = t;
    }
    facts.generations = gens;
  }
  put("outOfSyncBytes", num(d.outOfSyncBytes));
  if (isRecord(d.resync)) {
    const r = d.resync;
    const resync: Record<string, number | string> = {};
    const take = (key: string, value: number | string | undefined) => {
      if (value !== undefined) resync[key] = value;
    };
    take("kind", text(r.kind));
    take("source", text(r.source));
    take("bytesLeft", num(r.bytesLeft));
    take("bytesDone", num(r.bytesDone));
    const done = num(r.bytesDone);
    take(
      "totalBytes",
      num(r.totalBytes) ??
        (done !== undefined && resync.bytesLeft !== undefined
          ? done + (resync.bytesLeft as number)
          : undefined),
    );
    take("rateBytesPerSec", num(r.rateBytesPerSec));
    take("etaSeconds", num(r.etaSeconds));
    const left = num(resync.bytesLeft);
    const total = num(resync.totalBytes) ?? (node.size > 0 ? node.size : undefined);
    const given = num(r.progress);
    if (given !== undefined) take("progress", Math.min(1, Math.max(0, given)));
    else if (left !== undefined && total !== undefined && total > 0) {
      take("progress", Math.min(1, Math.max(0, 1 - left / total)));
    }
    facts.resync = resync;
  }
  put("checksum", text(d.checksum));
  put("checksumErrors", num(d.checksumErrors));
  put("reconnects", num(d.reconnects));
  put("resent", num(d.resent));
  put("timeouts", num(d.timeouts));
  put("peer", text(d.peer));
  put("reason", text(d.reason));
  if (Array.isArray(d.legs)) {
    facts.legs = d.legs.filter(isRecord).map((l) => {
      const leg: Record<string, unknown> = {
        name: text(l.name) ?? "?",
        state: text(l.state) ?? "?",
      };
      for (
        const key of ["reads", "writes", "errors", "resyncedBytes", "copiedBytes", "inStateMs"]
      ) {
        const v = num(l[key]);
        if (v !== undefined) leg[key] = v;
      }
      if (typeof l.reason === "string") leg.reason = l.reason;
      if (isRecord(l.latency)) {
        const latency: Record<string, LatencyFacts> = {};
        for (const [op, h] of Object.entries(l.latency)) {
          const facts = latencyFacts(h);
          if (facts !== undefined) latency[op] = facts;
        }
        leg.latency = latency;
      }
      return leg as unknown as LegFacts;
    });
  }
  if (isRecord(d.verify)) {
    const mismatched = num(d.verify.mismatchedBytes);
    const unresolved = num(d.verify.unresolvedBytes);
    if (mismatched !== undefined && unresolved !== undefined) {
      facts.verify = { mismatchedBytes: mismatched, unresolvedBytes: unresolved };
    }
  }
  if (isRecord(d.counters)) {
    const counters: Record<string, number> = {};
    for (const [k, v] of Object.entries(d.counters)) {
      const n = num(v);
      if (n !== undefined) counters[k] = n;
    }
    facts.counters = counters;
  }
  const numbers: Record<string, number> = {};
  for (const [k, v] of Object.entries(d)) {
    const n = num(v);
    if (n !== undefined && !KNOWN.has(k)) numbers[k] = n;
  }
  if (Object.keys(numbers).length > 0) facts.numbers = numbers;
  return facts as NodeFacts;
}

/** A histogram as a leg reports it, when well formed: as many buckets as bounds plus one. */
function latencyFacts(h: unknown): LatencyFacts | undefined {
  if (!isRecord(h) || !Array.isArray(h.buckets)) return undefined;
  const count = num(h.count);
  const sumSeconds = num(h.sumSeconds);
  const buckets = h.buckets.map(num);
  if (count === undefined || sumSeconds === undefined) return undefined;
  if (buckets.length !== LATENCY_BUCKETS.length + 1 || buckets.includes(undefined)) {
    return undefined;
  }
  return { count, sumSeconds, buckets: buckets as number[] };
}
