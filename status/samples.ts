/**
 * Throughput and latency over time, for the dashboard's charts without an outside service: once
 * a second the process turns its counters into rates (client reads and writes, their average
 * latency, the resync rate, each mirror leg's average answer time) and keeps the last ten
 * minutes of them in a bounded ring, served at `GET /api/samples`.
 */
import type { TreeNode } from "../storage/assemble.ts";
import type { IoSnapshot, IoStats } from "./io.ts";
import { type TreeJson, treeJson } from "./tree.ts";

export interface Sample {
  /** Milliseconds since the epoch, at the end of the interval. */
  readonly time: number;
  readonly readBytesPerSec: number;
  readonly writeBytesPerSec: number;
  readonly readOpsPerSec: number;
  readonly writeOpsPerSec: number;
  /** Average latency of the client requests that ended in the interval; null when none did. */
  readonly readLatencyMs: number | null;
  readonly writeLatencyMs: number | null;
  readonly inFlight: number;
  /** Bytes per second all running resyncs move together. */
  readonly resyncBytesPerSec: number;
  /** Each mirror leg's average answer time in the interval (reads and writes); null: none. */
  readonly legLatencyMs: Readonly<Record<string, number | null>>;
}

export const SAMPLE_CAPACITY = 600;
export const SAMPLE_INTERVAL_MS = 1000;

/** The last {@link SAMPLE_CAPACITY} samples. */
export class SampleRing {
  readonly #samples: Sample[] = [];
  readonly capacity: number;

  constructor(capacity = SAMPLE_CAPACITY) {
    this.capacity = capacity;
  }

  add(sample: Sample): void {
    this.#samples.push(sample);
    if (this.#samples.length > this.capacity) this.#samples.shift();
  }

  /** Samples taken after `time` (all when 0), oldest first. */
  since(time = 0): Sample[] {
    let at = this.#samples.length;
    while (at > 0 && this.#samples[at - 1]!.time > time) at--;
    return this.#samples.slice(at);
  }
}

/** What the sampler reads each tick. */
export interface SampleSource {
  readonly tree: TreeNode;
  readonly io?: IoStats;
}

interface Totals {
  readonly time: number;
  readonly io: IoSnapshot | undefined;
  /** Per leg: answers and their summed seconds (reads and writes). */
  readonly legs: Map<string, { count: number; seconds: number }>;
}

/** Takes a sample every interval into `ring` while started. */
export class Sampler {
  readonly #source: SampleSource;
  readonly #ring: SampleRing;
  readonly #now: () => number;
  #last: Totals | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(source: SampleSource, ring: SampleRing, now: () => number = Date.now) {
    this.#source = source;
    this.#ring = ring;
    this.#now = now;
  }

  get ring(): SampleRing {
    return this.#ring;
  }

  /** Samples every `intervalMs`; the timer does not keep the process alive. */
  start(intervalMs = SAMPLE_INTERVAL_MS): void {
    if (this.#timer !== undefined) return;
    this.tick();
    const timer = setInterval(() => this.tick(), intervalMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Reads the counters now; from the second reading on, adds the rates since the last one. */
  tick(): void {
    let tree: TreeJson;
    try {
      tree = treeJson(this.#source.tree);
    } catch {
      return; // a node that cannot report now is sampled next time
    }
    const now: Totals = {
      time: this.#now(),
      io: this.#source.io?.snapshot(),
      legs: legTotals(tree),
    };
    const last = this.#last;
    this.#last = now;
    if (last === undefined || now.time <= last.time) return;
    const seconds = (now.time - last.time) / 1000;
    const rate = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? 0 : Math.max(0, (a - b) / seconds);
    const latency = (op: "read" | "write") => {
      const n = (now.io?.ops[op].requests ?? 0) - (last.io?.ops[op].requests ?? 0);
      const s = (now.io?.ops[op].latencySeconds ?? 0) - (last.io?.ops[op].latencySeconds ?? 0);
      return n > 0 ? (s / n) * 1000 : null;
    };
    const legLatencyMs: Record<string, number | null> = {};
    for (const [leg, t] of now.legs) {
      const before = last.legs.get(leg) ?? { count: 0, seconds: 0 };
      const n = t.count - before.count;
      legLatencyMs[leg] = n > 0 ? ((t.seconds - before.seconds) / n) * 1000 : null;
    }
    this.#ring.add({
      time: now.time,
      readBytesPerSec: rate(now.io?.ops.read.bytes, last.io?.ops.read.bytes),
      writeBytesPerSec: rate(now.io?.ops.write.bytes, last.io?.ops.write.bytes),
      readOpsPerSec: rate(now.io?.ops.read.requests, last.io?.ops.read.requests),
      writeOpsPerSec: rate(now.io?.ops.write.requests, last.io?.ops.write.requests),
      readLatencyMs: latency("read"),
      writeLatencyMs: latency("write"),
      inFlight: now.io?.inFlight ?? 0,
      resyncBytesPerSec: resyncRate(tree),
      legLatencyMs,
    });
  }
}

/** Every mirror leg's answers so far (reads and writes) and their summed latency. */
function legTotals(tree: TreeJson): Map<string, { count: number; seconds: number }> {
  const out = new Map<string, { count: number; seconds: number }>();
  const visit = (node: TreeJson) => {
    for (const leg of node.facts.legs ?? []) {
      let count = 0;
      let seconds = 0;
      for (const op of ["read", "write"]) {
        const h = leg.latency?.[op];
        if (h !== undefined) {
          count += h.count;
          seconds += h.sumSeconds;
        }
      }
      if (leg.latency !== undefined) out.set(leg.name, { count, seconds });
    }
    node.children.forEach(visit);
  };
  visit(tree);
  return out;
}

function resyncRate(tree: TreeJson): number {
  let sum = tree.facts.resync?.rateBytesPerSec ?? 0;
  for (const child of tree.children) sum += resyncRate(child);
  return sum;
}
