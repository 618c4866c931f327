/**
 * The shapes a seed builds: a tree of leaves (node processes on simulated disks), linears,
 * mirrors, parity (RAID 5) and storages (a child exporter process serving its tree as a node to
 * the parent). Seeds pick the family and the sizes; one family builds trees of 40 nodes in 4
 * levels. With `--parity` every seed builds a parity shape instead, drawn from its own stream
 * ("parity"), so the other seeds' shapes are what they were before parity existed. (Not by
 * default: parity seeds still fail on a double fault, see gaps.ts: parity-double-fault.)
 */
import type { Rng } from "./rng.ts";

export const BLOCK = 4096;

export interface MirrorTuning {
  readonly chunkSize: number;
  readonly legTimeoutMs: number;
  readonly probeMs: number;
  readonly activityIdleMs: number;
  readonly parallel: number;
  readonly readPolicy: "round-robin" | "nearest";
}

export interface LeafSpec {
  readonly kind: "leaf";
  readonly id: string;
  readonly size: number;
}

export interface LinearSpec {
  readonly kind: "linear";
  readonly id: string;
  readonly children: Spec[];
}

export interface MirrorSpec {
  readonly kind: "mirror";
  readonly id: string;
  /** Changes when the operator adds or removes a leg. */
  legs: Spec[];
  readonly tuning: MirrorTuning;
  /** Parity (RAID 5) over the legs with this stripe unit, not a mirror (actors/parity/). */
  readonly parity?: number;
}

/** A child exporter process: it assembles `root` and serves it as a node. */
export interface StorageSpec {
  readonly kind: "storage";
  readonly id: string;
  readonly root: Spec;
}

export type Spec = LeafSpec | LinearSpec | MirrorSpec | StorageSpec;

export type Family =
  | "mirror"
  | "mirror-of-linears"
  | "linear-of-mirrors"
  | "storage-leg"
  | "deep"
  | "parity"
  | "mirror-of-parity"
  | "parity-storage";

export interface Shape {
  readonly family: Family;
  readonly root: Spec;
}

export function sizeOf(spec: Spec): number {
  switch (spec.kind) {
    case "leaf":
      return spec.size;
    case "linear":
      return spec.children.reduce((n, c) => n + sizeOf(c), 0);
    case "mirror": {
      const smallest = Math.min(...spec.legs.map(sizeOf));
      if (spec.parity === undefined) return smallest;
      return Math.floor(smallest / spec.parity) * spec.parity * (spec.legs.length - 1);
    }
    case "storage":
      return sizeOf(spec.root);
  }
}

/** Where leg byte `offset` of a parity's data unit holding its byte `offset` lives. */
export function parityPlace(
  spec: MirrorSpec,
  offset: number,
): { leg: number; legOffset: number } {
  const unit = spec.parity!;
  const n = spec.legs.length;
  const u = Math.floor(offset / unit);
  const row = Math.floor(u / (n - 1));
  const parityLeg = n - 1 - (row % n);
  return { leg: (parityLeg + 1 + (u % (n - 1))) % n, legOffset: row * unit + (offset % unit) };
}

/** Every spec of the tree, parents before children. */
export function walk(spec: Spec, out: Spec[] = []): Spec[] {
  out.push(spec);
  switch (spec.kind) {
    case "linear":
      for (const c of spec.children) walk(c, out);
      break;
    case "mirror":
      for (const l of spec.legs) walk(l, out);
      break;
    case "storage":
      walk(spec.root, out);
      break;
  }
  return out;
}

/** Nodes (leaves and mappings, a storage's root counted once) and levels of mappings. */
export function measure(root: Spec): { nodes: number; levels: number } {
  const depth = (s: Spec): number => {
    switch (s.kind) {
      case "leaf":
        return 0;
      case "storage":
        return depth(s.root);
      case "linear":
        return 1 + Math.max(...s.children.map(depth));
      case "mirror":
        return 1 + Math.max(...s.legs.map(depth));
    }
  };
  return { nodes: walk(root).filter((s) => s.kind !== "storage").length, levels: depth(root) };
}

/**
 * Draws the tree of a seed (with `parityRng`, a parity shape: the tree drawn is dropped, so the
 * shape stream is used as without it). Unless `gaps`, a mirror with legs that keep no media
 * waits longer for them than their own mirrors wait for theirs (a slow leg of theirs would take
 * it out).
 */
export function drawShape(rng: Rng, gaps = false, parityRng?: Rng): Shape {
  const drawn = drawTree(rng);
  const shape = parityRng !== undefined ? drawParity(parityRng) : drawn;
  if (!gaps) {
    for (const s of walk(shape.root)) {
      if (s.kind === "mirror" && s.legs.some((l) => l.kind !== "leaf")) {
        (s as { tuning: MirrorTuning }).tuning = {
          ...s.tuning,
          legTimeoutMs: rng.int(8000, 12000),
        };
      }
    }
  }
  return shape;
}

function tuningOf(rng: Rng): MirrorTuning {
  return {
    chunkSize: rng.pick([4096, 8192, 16384]),
    legTimeoutMs: rng.int(300, 3000),
    probeMs: rng.pick([500, 1000, 2000]),
    activityIdleMs: rng.pick([100, 500, 2000, 5000]),
    parallel: rng.int(1, 4),
    readPolicy: rng.chance(0.8) ? "round-robin" : "nearest",
  };
}

/**
 * A parity shape: parity over 3 to 5 leaves (stripe unit one block), a mirror of a parity and a
 * leaf, or a mirror of a child exporter serving a parity and a leaf.
 */
function drawParity(rng: Rng): Shape {
  let n = 0;
  const id = (prefix: string) => `${prefix}${++n}`;
  const leaf = (blocks: number): LeafSpec => ({
    kind: "leaf",
    id: id("leaf"),
    size: blocks * BLOCK,
  });
  const parity = (legs: number, blocks: number): MirrorSpec => ({
    kind: "mirror",
    id: id("p"),
    legs: Array.from({ length: legs }, () => leaf(blocks)),
    // A leg slow under load (no fault) must not count as failed: two of them stop a parity
    // (gaps.ts: parity-double-fault), as the mirror's 300 ms would under verify and rebuilds.
    tuning: { ...tuningOf(rng), legTimeoutMs: rng.int(5000, 10000) },
    parity: BLOCK,
  });
  const roll = rng.next();
  const blocks = rng.int(6, 16);
  if (roll < 0.7) return { family: "parity", root: parity(rng.int(3, 5), blocks) };
  const legs = rng.int(3, 4);
  const inner = parity(legs, blocks);
  const other = leaf(blocks * (legs - 1));
  if (roll < 0.85) {
    return {
      family: "mirror-of-parity",
      root: { kind: "mirror", id: id("m"), legs: [inner, other], tuning: tuningOf(rng) },
    };
  }
  const storage: StorageSpec = { kind: "storage", id: id("s"), root: inner };
  return {
    family: "parity-storage",
    root: { kind: "mirror", id: id("m"), legs: [storage, other], tuning: tuningOf(rng) },
  };
}

function drawTree(rng: Rng): Shape {
  let n = 0;
  const id = (prefix: string) => `${prefix}${++n}`;
  const tuning = (): MirrorTuning => ({
    chunkSize: rng.pick([4096, 8192, 16384]),
    legTimeoutMs: rng.int(300, 3000),
    probeMs: rng.pick([500, 1000, 2000]),
    activityIdleMs: rng.pick([100, 500, 2000, 5000]),
    parallel: rng.int(1, 4),
    readPolicy: rng.chance(0.8) ? "round-robin" : "nearest",
  });
  const leaf = (blocks: number): LeafSpec => ({
    kind: "leaf",
    id: id("leaf"),
    size: blocks * BLOCK,
  });
  const mirror = (legs: Spec[]): MirrorSpec => ({
    kind: "mirror",
    id: id("m"),
    legs,
    tuning: tuning(),
  });
  const linear = (children: Spec[]): LinearSpec => ({ kind: "linear", id: id("l"), children });
  const storage = (root: Spec): StorageSpec => ({ kind: "storage", id: id("s"), root });
  /** Leaves of `blocks` in all, split at random into `parts`. */
  const split = (blocks: number, parts: number): Spec[] => {
    const cuts = new Set<number>();
    while (cuts.size < parts - 1) cuts.add(rng.int(1, blocks - 1));
    const at = [0, ...[...cuts].sort((a, b) => a - b), blocks];
    return at.slice(1).map((end, i) => leaf(end - at[i]!));
  };

  const roll = rng.next();
  const family: Family = roll < 0.3
    ? "mirror"
    : roll < 0.45
    ? "mirror-of-linears"
    : roll < 0.65
    ? "linear-of-mirrors"
    : roll < 0.9
    ? "storage-leg"
    : "deep";
  switch (family) {
    case "mirror": {
      const blocks = rng.int(8, 32);
      return { family, root: mirror(Array.from({ length: rng.int(2, 3) }, () => leaf(blocks))) };
    }
    case "mirror-of-linears": {
      const blocks = rng.int(8, 32);
      const legs = Array.from(
        { length: rng.int(2, 3) },
        () => linear(split(blocks, rng.int(2, 3))),
      );
      return { family, root: mirror(legs) };
    }
    case "linear-of-mirrors": {
      const parts = Array.from({ length: rng.int(2, 3) }, () => {
        const blocks = rng.int(4, 16);
        return mirror(Array.from({ length: rng.int(2, 3) }, () => leaf(blocks)));
      });
      return { family, root: linear(parts) };
    }
    case "storage-leg": {
      const blocks = rng.int(8, 24);
      const inner = (): Spec =>
        rng.chance(0.5) ? mirror([leaf(blocks), leaf(blocks)]) : linear(split(blocks, 2));
      const legs: Spec[] = [storage(inner())];
      legs.push(rng.chance(0.5) ? storage(inner()) : leaf(blocks));
      return { family, root: mirror(legs) };
    }
    case "deep": {
      // A linear of 3 storages (child exporters), each a linear of 3 mirrors of 3 leaves:
      // 1 + 3 + 9 + 27 = 40 nodes, 3 levels of mappings, 3 levels of processes.
      const parts = Array.from({ length: 3 }, () =>
        storage(linear(Array.from({ length: 3 }, () => {
          const blocks = rng.int(2, 6);
          return mirror([leaf(blocks), leaf(blocks), leaf(blocks)]);
        }))));
      return { family, root: linear(parts) };
    }
  }
}
