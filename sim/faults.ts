/**
 * The fault schedule of a seed: which kinds of faults it injects and how often (each seed its
 * own mix), then, at random times, one fault at a time: a node crashes (and comes back), gets new
 * media, or its disk hangs past the legs' timeout; a link is cut for a while or reset; an
 * exporter crashes and restarts from its legs' media; the operator suspends, resumes, marks
 * dirty or clean, adds or removes a leg, or verifies. Every fault is recorded for the report.
 */
import type { MirrorAction } from "../actors/mirror/mod.ts";
import type { LeafNode } from "./node.ts";
import type { Rng } from "./rng.ts";
import { sizeOf, type Spec, walk } from "./topology.ts";
import type { World } from "./world.ts";

const KINDS = [
  "crash-leaf",
  "replace-media",
  "hang-disk",
  "partition",
  "reset-link",
  "crash-root",
  "crash-storage",
  "operator",
] as const;
export type FaultKind = typeof KINDS[number];

const ACTIONS = ["suspend", "resume", "dirty", "clean", "add-leg", "remove-leg", "verify"] as const;

export interface FaultPlan {
  readonly meanGapMs: number;
  readonly weights: Readonly<Record<FaultKind, number>>;
  readonly actions: Readonly<Record<typeof ACTIONS[number], number>>;
  /** How long a crashed process stays down, a partition lasts. */
  readonly downMs: readonly [number, number];
}

export function drawPlan(rng: Rng): FaultPlan {
  const weights = Object.fromEntries(
    KINDS.map((k) => [k, rng.chance(0.6) ? rng.range(0.2, 1) : 0]),
  ) as Record<FaultKind, number>;
  const actions = Object.fromEntries(
    ACTIONS.map((a) => [a, rng.chance(0.6) ? rng.range(0.2, 1) : 0]),
  ) as Record<typeof ACTIONS[number], number>;
  return {
    meanGapMs: rng.pick([100, 300, 1000, 3000]),
    weights,
    actions,
    downMs: rng.pick([[20, 500], [100, 3000], [1000, 8000]] as const),
  };
}

function weighted<K extends string>(rng: Rng, weights: Readonly<Record<K, number>>): K | undefined {
  const entries = Object.entries(weights) as [K, number][];
  const total = entries.reduce((n, [, w]) => n + w, 0);
  if (total <= 0) return undefined;
  let roll = rng.next() * total;
  for (const [k, w] of entries) {
    roll -= w;
    if (roll < 0) return k;
  }
  return entries[entries.length - 1]![0];
}

export class FaultInjector {
  running = false;
  /** Disks hung now, legs suspended by the operator: the heal phase undoes them. */
  readonly hung = new Set<LeafNode>();
  readonly suspended = new Set<string>();

  constructor(readonly world: World, readonly plan: FaultPlan, readonly rng: Rng) {}

  start(): void {
    this.running = true;
    this.#next();
  }

  stop(): void {
    this.running = false;
  }

  #record(line: string): void {
    const w = this.world;
    w.schedule.push(`${w.sim.now().toFixed(1)} ${line}`);
    w.trace.event(`FAULT ${line}`);
  }

  #next(): void {
    if (!this.running) return;
    this.world.own.setTimeout(() => {
      if (!this.running) return;
      const w = this.world;
      w.relax();
      const kind = weighted(this.rng, this.plan.weights);
      // Close to a known design gap (gaps.ts): no fault until every leg is back.
      if (kind !== undefined && w.calmFor === undefined) this.#inject(kind);
      this.#next();
    }, this.rng.exp(this.plan.meanGapMs));
  }

  #down(): number {
    return this.rng.range(this.plan.downMs[0], this.plan.downMs[1]);
  }

  #inject(kind: FaultKind): void {
    const w = this.world;
    const rng = this.rng;
    switch (kind) {
      case "crash-leaf": {
        const up = w.treeLeaves().filter((l) => l.state === "up" && this.#may("lose", l.id));
        if (up.length === 0) return;
        const leaf = rng.pick(up);
        const ms = this.#down();
        this.#record(`crash ${leaf.id} for ${ms.toFixed(0)} ms`);
        w.crashLeaf(leaf, false);
        w.restartLeaf(leaf, ms);
        return;
      }
      case "replace-media": {
        const leaf = this.#replaceable();
        if (leaf === undefined) return;
        const ms = this.#down();
        this.#record(`new media for ${leaf.id} after ${ms.toFixed(0)} ms`);
        w.crashLeaf(leaf, true);
        w.restartLeaf(leaf, ms);
        return;
      }
      case "hang-disk": {
        const up = w.treeLeaves().filter((l) =>
          l.state === "up" && !l.disk.hung && this.#may("disturb", l.id)
        );
        if (up.length === 0) return;
        const leaf = rng.pick(up);
        // Longer than the leg timeout of the mirrors above it: they give up on it.
        const timeouts = w.model.path(leaf.id).map(([m]) => {
          const s = w.model.find(m);
          return s?.kind === "mirror" ? s.tuning.legTimeoutMs : 0;
        });
        const ms = Math.max(500, ...timeouts) * rng.range(1.1, 2.5);
        this.#record(`hang the disk of ${leaf.id} for ${ms.toFixed(0)} ms`);
        leaf.disk.hang();
        this.hung.add(leaf);
        w.own.setTimeout(() => {
          if (!this.hung.delete(leaf)) return;
          leaf.disk.release();
          w.trace.event(`disk of ${leaf.id} answers again`);
        }, ms);
        return;
      }
      case "partition":
      case "reset-link": {
        const pairs = this.#links().filter(([, b]) => this.#may("disturb", b));
        if (pairs.length === 0) return;
        const [a, b] = rng.pick(pairs);
        if (kind === "reset-link") {
          this.#record(`reset the links ${a} - ${b}`);
          w.network.reset(a, b);
          return;
        }
        const ms = this.#down();
        this.#record(`partition ${a} | ${b} for ${ms.toFixed(0)} ms`);
        w.network.partition(a, b, true);
        w.own.setTimeout(() => {
          w.network.partition(a, b, false);
          w.trace.event(`partition ${a} | ${b} healed`);
        }, ms);
        return;
      }
      case "crash-root":
      case "crash-storage": {
        const candidates = kind === "crash-root"
          ? [w.root]
          : w.treeExporters().filter((e) => e !== w.root);
        const up = candidates.filter((e) => e.state !== "down" && (w.gaps || w.guard.mayCrash(e)));
        if (up.length === 0) return;
        const exporter = rng.pick(up);
        const ms = this.#down();
        this.#record(`crash exporter ${exporter.id} for ${ms.toFixed(0)} ms`);
        w.crashExporter(exporter);
        w.restartExporter(exporter, ms);
        return;
      }
      case "operator":
        this.#operate();
        return;
    }
  }

  /** Unless the run exposes design gaps: is this fault clear of them (see gaps.ts)? */
  #may(what: "lose" | "disturb", id: string): boolean {
    const w = this.world;
    if (w.gaps) return true;
    return what === "lose" ? w.guard.mayLose(id) : w.guard.mayDisturb(id);
  }

  /** Pairs of processes that hold links: each exporter and the nodes it reaches. */
  #links(): [string, string][] {
    const out: [string, string][] = [];
    for (const e of this.world.treeExporters()) {
      const visit = (s: Spec) => {
        if (s.kind === "leaf" || s.kind === "storage") out.push([e.id, s.id]);
        else if (s.kind === "linear") s.children.forEach(visit);
        else if (s.kind === "mirror") s.legs.forEach(visit);
      };
      visit(e.spec);
    }
    return out;
  }

  /**
   * A leaf whose media may be replaced without losing the storage's data: it sits under a
   * mirror leg, and every other leg of that mirror is in sync on nodes that are up.
   */
  #replaceable(): LeafNode | undefined {
    const w = this.world;
    const candidates = w.treeLeaves().filter((leaf) => {
      if (leaf.state !== "up" || !this.#may("lose", leaf.id)) return false;
      const path = w.model.path(leaf.id);
      const last = path[path.length - 1];
      if (last === undefined) return false;
      const [mirrorId, legId] = last;
      const mirror = walk(w.shape.root).find((s) => s.id === mirrorId);
      if (mirror?.kind !== "mirror") return false;
      return mirror.legs.every((l) =>
        l.id === legId || (w.model.inSyncSince(mirrorId, l.id) !== undefined &&
          walk(l).every((s) => s.kind !== "leaf" || w.leaves.get(s.id)?.state === "up") &&
          walk(l).every((s) => s.kind !== "storage" || w.exporters.get(s.id)?.state === "up"))
      ) && path.every(([m, l]) => w.model.inSyncSince(m, l) !== undefined);
    });
    return candidates.length === 0 ? undefined : this.rng.pick(candidates);
  }

  #operate(): void {
    const w = this.world;
    const running = w.runningMirrors();
    if (running.length === 0) return;
    const { exporter, id, running: m } = this.rng.pick(running);
    const action = weighted(this.rng, this.plan.actions);
    if (action === undefined) return;
    const legs = m.spec.legs.map((l) => l.id);
    const leg = this.rng.pick(legs);
    // A parity storage keeps its legs (the operator is refused; nothing to test there).
    if (m.spec.parity !== undefined && (action === "add-leg" || action === "remove-leg")) return;
    const takesOut = action === "suspend" || action === "dirty" || action === "remove-leg";
    if (takesOut && !w.gaps && !w.guard.mayTakeOut(id)) return;
    let act: MirrorAction;
    switch (action) {
      case "suspend":
        act = { action: "suspend", leg };
        this.suspended.add(`${id}/${leg}`);
        w.own.setTimeout(() => void this.#resume(id, leg), this.#down());
        break;
      case "resume":
        act = { action: "resume", leg };
        break;
      case "dirty":
        act = { action: "dirty", leg };
        break;
      case "clean":
        act = { action: "clean", leg, force: false };
        break;
      case "verify":
        act = { action: "verify" };
        break;
      case "remove-leg":
        if (legs.length <= 2) return;
        act = { action: "remove-leg", leg };
        break;
      case "add-leg": {
        if (legs.length >= 4) return;
        const spare = w.spare(sizeOf(m.spec));
        this.#record(`operator: add ${spare.id} to ${id}`);
        void spare.start().then(async () => {
          // Once the faults stopped, nothing more starts (the heal phase waits for quiet).
          if (!this.running || spare.state !== "up" || exporter.state !== "up") return;
          try {
            w.trace.event(`operator: ${await exporter.addLeg(id, spare.spec)}`);
          } catch (error) {
            w.trace.event(`operator: add ${spare.id} refused: ${(error as Error).message}`);
          }
        });
        return;
      }
    }
    this.#record(`operator: ${act.action} ${"leg" in act ? act.leg : ""} on ${id}`);
    void exporter.act(id, act).then(
      (message) => this.#acted(id, act, message),
      (error) => w.trace.event(`operator: ${act.action} refused: ${(error as Error).message}`),
    );
  }

  #acted(mirror: string, act: MirrorAction, message: string): void {
    const w = this.world;
    w.trace.event(`operator: ${message}`);
    if (act.action === "verify") {
      const report = w.exporterOf(mirror)?.mirrors.get(mirror)?.mirror.lastVerify();
      if (report !== undefined && report.mismatchedChunks > 0) {
        w.fail(`verify of ${mirror} found in-sync legs that differ: ${message}`);
      }
    }
  }

  /** Resumes a leg the operator suspended (also done by the heal phase). */
  async #resume(mirror: string, leg: string): Promise<void> {
    if (!this.suspended.delete(`${mirror}/${leg}`)) return;
    const exporter = this.world.exporterOf(mirror);
    if (exporter?.state !== "up" || !exporter.mirrors.has(mirror)) return;
    await exporter.act(mirror, { action: "resume", leg }).then(
      (message) => this.world.trace.event(`operator: ${message}`),
      (error) => this.world.trace.event(`operator: resume refused: ${(error as Error).message}`),
    );
  }
}
