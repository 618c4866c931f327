/**
 * Test support: a storage tree and control for status tests without processes. A mirror of a
 * resyncing remote leg and a suspended file leg; the control records its calls and changes the
 * legs' states, so the routes can be checked against what the control saw.
 */
import { LATENCY_BUCKETS } from "../../util/latency_histogram.ts";
import type { NodeState, TreeNode } from "../../storage/assemble.ts";
import {
  ControlError,
  type ControlResult,
  type LegSpec,
  type StorageControl,
} from "../../storage/control.ts";

export interface FixtureCall {
  readonly action: string;
  readonly args: readonly unknown[];
}

export interface Fixture {
  readonly tree: TreeNode;
  readonly control: StorageControl;
  readonly calls: FixtureCall[];
}

const MiB = 1024 * 1024;

export function statusFixture(): Fixture {
  const calls: FixtureCall[] = [];
  const legState: Record<string, NodeState["state"]> = { a: "rebuilding", b: "suspended" };
  const leaf = (
    name: string,
    kind: TreeNode["kind"],
    address: string,
    detail: () => Record<string, unknown>,
  ): TreeNode => ({
    name,
    kind,
    size: 64 * MiB,
    address,
    children: [],
    state: () => ({ state: legState[name]!, detail: detail() }),
  });
  const a = leaf("a", "remote", "unix:///tmp/a.sock", () => ({
    reconnects: 2,
    resent: 5,
    checksumErrors: 1,
    timeouts: 0,
    checksum: "xxh64",
    peer: "node-a",
    storageId: "0123456789abcdef0123456789abcdef",
    generations: { current: "aa11", bitmap: "bb22", history: ["cc33", "dd44"] },
    outOfSyncBytes: 48 * MiB,
    resync: {
      kind: "resync",
      source: "b",
      bytesLeft: 48 * MiB,
      bytesDone: 16 * MiB,
      bytesCopied: 12 * MiB,
      rateBytesPerSec: 8 * MiB,
      etaSeconds: 6,
    },
    counters: { bitmapBitsSet: 7 },
  }));
  const b = leaf("b", "file", "/var/lib/dst/b.img", () => ({
    reason: "suspended by the administrator",
    outOfSyncBytes: 4096,
  }));
  const m: TreeNode = {
    name: "m",
    kind: "mirror",
    size: 64 * MiB,
    children: [a, b],
    state: () => ({
      state: Object.values(legState).includes("in-sync") ? "degraded" : "down",
      detail: {
        legs: [
          {
            name: "a",
            state: legState.a,
            reads: 10,
            writes: 20,
            errors: 0,
            latency: {
              read: { count: 10, sumSeconds: 0.02, buckets: latencyBuckets(3, 7, 10) },
              write: { count: 20, sumSeconds: 0.1, buckets: latencyBuckets(0, 10, 20) },
              flush: { count: 0, sumSeconds: 0, buckets: latencyBuckets(0, 0, 0) },
            },
          },
          { name: "b", state: legState.b, reads: 3, writes: 4, errors: 1, reason: "suspended" },
        ],
      },
    }),
  };
  const ok = (message: string): Promise<ControlResult> => Promise.resolve({ ok: true, message });
  const leg = (node: string) => {
    if (!(node in legState)) {
      return Promise.reject(new ControlError("unknown-node", `${node} is not a leg`));
    }
    return undefined;
  };
  const control: StorageControl = {
    nodes: () => ["m", ...Object.keys(legState)],
    suspend(node) {
      calls.push({ action: "suspend", args: [node] });
      if (legState[node] === "suspended") {
        return Promise.reject(new ControlError("impossible", `${node} is already suspended`));
      }
      legState[node] = "suspended";
      return leg(node) ?? ok(`${node} suspended`);
    },
    resume(node) {
      calls.push({ action: "resume", args: [node] });
      legState[node] = "rebuilding";
      return leg(node) ?? ok(`${node} resumed`);
    },
    clean(node) {
      calls.push({ action: "clean", args: [node] });
      return leg(node) ?? ok(`${node} marked clean`);
    },
    dirty(node) {
      calls.push({ action: "dirty", args: [node] });
      return leg(node) ?? ok(`${node} marked dirty`);
    },
    addLeg(mirror: string, name: string, spec: LegSpec) {
      calls.push({ action: "addLeg", args: [mirror, name, spec] });
      return ok(`${name} added to ${mirror}`);
    },
    removeLeg(mirror, name) {
      calls.push({ action: "removeLeg", args: [mirror, name] });
      return ok(`${name} removed from ${mirror}`);
    },
    verify(mirror) {
      calls.push({ action: "verify", args: [mirror] });
      return mirror === "m"
        ? ok("verify started")
        : Promise.reject(new ControlError("impossible", `${mirror} is not a mirror`));
    },
  };
  return { tree: m, control, calls };
}

/** Cumulative buckets over LATENCY_BUCKETS: `fast` under 1 ms, `ms` under 10 ms, `all`. */
function latencyBuckets(fast: number, ms: number, all: number): number[] {
  return LATENCY_BUCKETS.map((le) =>
    le <= 0.00025 ? fast : le < 0.001 ? fast : le < 0.01 ? ms : all
  )
    .concat(all);
}
