/**
 * What the checker may expect of the tree after crashes: which replicas of a block kept what
 * was acknowledged. A leaf keeps what it acknowledged until it crashes (unsynced writes) or its
 * media is replaced (everything); a linear keeps what its child keeps; a mirror keeps it while
 * one of its legs has been in sync since the write was acknowledged and kept it itself; a parity
 * keeps it while the leg holding its unit did so, or every other leg did (they rebuild it). Leg
 * states come from the mirrors' own reports, in the checker's logical time.
 */
import type { LegState } from "../actors/mirror/mod.ts";
import type { Durability } from "./checker.ts";
import { BLOCK, type MirrorSpec, parityPlace, sizeOf, type Spec } from "./topology.ts";

interface LegSeen {
  state: LegState;
  /** Logical time it last entered its state. */
  since: number;
}

export class TreeModel implements Durability {
  /** Mirror id → leg id → its last reported state (cleared when its exporter dies). */
  readonly legs = new Map<string, Map<string, LegSeen>>();
  /** Leaf id → logical time of its last crash, and of its last new media. */
  readonly crashedAt = new Map<string, number>();
  readonly replacedAt = new Map<string, number>();

  constructor(readonly root: Spec) {}

  legMoved(mirror: string, leg: string, state: LegState, at: number): void {
    let legs = this.legs.get(mirror);
    if (legs === undefined) this.legs.set(mirror, legs = new Map());
    const seen = legs.get(leg);
    if (seen?.state === state) return;
    legs.set(leg, { state, since: at });
  }

  forget(mirrors: readonly string[]): void {
    for (const m of mirrors) this.legs.delete(m);
  }

  inSyncSince(mirror: string, leg: string): number | undefined {
    const seen = this.legs.get(mirror)?.get(leg);
    return seen?.state === "in-sync" ? seen.since : undefined;
  }

  preserved(block: number, since: number): boolean {
    return this.#kept(this.root, block * BLOCK, since, false);
  }

  preservedDurable(block: number, since: number): boolean {
    return this.#kept(this.root, block * BLOCK, since, true);
  }

  #kept(spec: Spec, offset: number, since: number, durable: boolean): boolean {
    switch (spec.kind) {
      case "leaf": {
        const lost = (durable ? this.replacedAt : this.crashedAt).get(spec.id) ?? -1;
        const replaced = this.replacedAt.get(spec.id) ?? -1;
        return lost <= since && replaced <= since;
      }
      case "storage":
        return this.#kept(spec.root, offset, since, durable);
      case "linear": {
        let start = 0;
        for (const c of spec.children) {
          const size = sizeOf(c);
          if (offset < start + size) return this.#kept(c, offset - start, since, durable);
          start += size;
        }
        return false;
      }
      case "mirror": {
        const kept = (l: Spec, at: number) => {
          const inSync = this.inSyncSince(spec.id, l.id);
          return inSync !== undefined && inSync <= since && this.#kept(l, at, since, durable);
        };
        if (spec.parity === undefined) return spec.legs.some((l) => kept(l, offset));
        const { leg, legOffset } = parityPlace(spec, offset);
        return kept(spec.legs[leg]!, legOffset) ||
          spec.legs.every((l, i) => i === leg || kept(l, legOffset));
      }
    }
  }

  /**
   * Where each node of the tree starts in the storage's address space (nothing under a parity:
   * its legs hold units and parity, not a range of the storage).
   */
  bases(): Map<string, number> {
    const out = new Map<string, number>();
    const visit = (spec: Spec, base: number) => {
      out.set(spec.id, base);
      switch (spec.kind) {
        case "storage":
          visit(spec.root, base);
          break;
        case "mirror":
          if (spec.parity === undefined) { for (const l of spec.legs) visit(l, base); }
          break;
        case "linear": {
          let at = base;
          for (const c of spec.children) {
            visit(c, at);
            at += sizeOf(c);
          }
          break;
        }
      }
    };
    visit(this.root, 0);
    return out;
  }

  /**
   * The mirror legs on the way from the root down to `id` (mirror, leg): a read there means
   * something only while every one of them is in sync.
   */
  path(id: string): [string, string][] {
    const found: [string, string][] = [];
    const search = (spec: Spec, trail: [string, string][]): boolean => {
      if (spec.id === id) {
        found.push(...trail);
        return true;
      }
      switch (spec.kind) {
        case "storage":
          return search(spec.root, trail);
        case "linear":
          return spec.children.some((c) => search(c, trail));
        case "mirror":
          return spec.legs.some((l) => search(l, [...trail, [spec.id, l.id]]));
        default:
          return false;
      }
    };
    search(this.root, []);
    return found;
  }

  /** Root blocks a leaf holds (any replica of them; under a parity, part of every block of it). */
  blocksOf(leaf: string, blocks: number): number[] {
    const parity = this.path(leaf).map(([m]) => this.find(m)).find((s) =>
      s?.kind === "mirror" && s.parity !== undefined
    ) as MirrorSpec | undefined;
    const id = parity?.id ?? leaf;
    const base = this.bases().get(id);
    const spec = this.find(id);
    if (base === undefined || spec === undefined) return [];
    const first = Math.floor(base / BLOCK);
    const last = Math.min(blocks, Math.ceil((base + sizeOf(spec)) / BLOCK));
    return Array.from({ length: Math.max(0, last - first) }, (_, i) => first + i);
  }

  find(id: string): Spec | undefined {
    const search = (spec: Spec): Spec | undefined => {
      if (spec.id === id) return spec;
      switch (spec.kind) {
        case "storage":
          return search(spec.root);
        case "linear":
          for (const c of spec.children) {
            const f = search(c);
            if (f) return f;
          }
          return undefined;
        case "mirror":
          for (const l of spec.legs) {
            const f = search(l);
            if (f) return f;
          }
          return undefined;
        default:
          return undefined;
      }
    };
    return search(this.root);
  }
}
