/**
 * One seed's world: the simulated clock, network and disks, the node and exporter processes of
 * the seed's tree, the workload and the checker, wired together. Processes crash and come back
 * through here, so the checker and the tree model hear of every crash.
 */
import type { BlockDevice, MediaState } from "../actors/block/contract.ts";
import type { LegStatus } from "../actors/mirror/mod.ts";
import { Checker } from "./checker.ts";
import { TreeModel } from "./durability.ts";
import { Exporter, type ExporterObserver, type RunningMirror } from "./exporter.ts";
import type { SimHost } from "./host.ts";
import { CALM, drawRates, type NetworkRates, SimNetwork } from "./network.ts";
import { LeafNode } from "./node.ts";
import { SimProcess } from "./process.ts";
import { drawExporterTuning, type ExporterTuning } from "./profiles.ts";
import { fork, type Rng } from "./rng.ts";
import { Driver, ProcessClock, SimClock } from "./scheduler.ts";
import { GapGuard } from "./gaps.ts";
import {
  BLOCK,
  drawShape,
  type LeafSpec,
  type Shape,
  sizeOf,
  type Spec,
  walk,
} from "./topology.ts";
import { Trace } from "./trace.ts";
import { drawMix, Workload } from "./workload.ts";

export interface WorldOptions {
  readonly seed: number;
  readonly verbose?: boolean;
  /** Host turns at most for the whole seed. */
  readonly maxSteps?: number;
  /** Inject the faults that trip known design gaps too (see gaps.ts). */
  readonly gaps?: boolean;
  /** Overrides the drawn legIoTimeoutMs (profiles.ts): seeds kept from before it was drawn. */
  readonly legIoTimeoutMs?: number;
  /** The gap guard's rotation headroom (gaps.ts; default 2, Infinity lifts it). */
  readonly rotationHeadroom?: number;
  /** Build a parity shape (see topology.ts). */
  readonly parity?: boolean;
}

export class World implements SimHost, ExporterObserver {
  readonly seed: number;
  readonly sim: SimClock;
  readonly driver: Driver;
  readonly network: SimNetwork;
  readonly trace: Trace;
  readonly secret = "simulated cluster secret";
  readonly own: ProcessClock;
  readonly shape: Shape;
  readonly model: TreeModel;
  readonly checker: Checker;
  readonly leaves = new Map<string, LeafNode>();
  readonly exporters = new Map<string, Exporter>();
  readonly root: Exporter;
  readonly workload: Workload;
  readonly tuning: ExporterTuning;
  readonly gaps: boolean;
  readonly guard: GapGuard;
  /** What was injected, when: printed for a failing seed. */
  readonly schedule: string[] = [];
  /** Processes the simulation keeps bringing back after crashes. */
  restarting = true;
  /** The faults are over: the network stays calm. */
  healing = false;
  #incarnations = new Map<string, number>();
  #calmFor: string | undefined;
  readonly #faultRates: NetworkRates;
  #rates: NetworkRates | undefined;
  #spares = 0;

  constructor(options: WorldOptions) {
    this.seed = options.seed;
    this.gaps = options.gaps ?? false;
    this.guard = new GapGuard(this, options.rotationHeadroom);
    this.sim = new SimClock(this.rng("timers"));
    this.driver = new Driver(this.sim, { maxSteps: options.maxSteps ?? 2_000_000 });
    this.trace = new Trace(() => this.sim.now(), options.verbose ?? false);
    this.own = new ProcessClock(this.sim);
    // The tree starts on a calm network; the seed's rates apply once it serves (faults()).
    this.network = new SimNetwork(new ProcessClock(this.sim), this.rng("network"), CALM);
    this.#faultRates = drawRates(this.rng("rates"), options.gaps ?? false);
    this.shape = drawShape(
      this.rng("shape"),
      this.gaps,
      options.parity ? this.rng("parity") : undefined,
    );
    this.model = new TreeModel(this.shape.root);
    const tuning = drawExporterTuning(this.rng("tuning"));
    this.tuning = options.legIoTimeoutMs === undefined
      ? tuning
      : { ...tuning, legIoTimeoutMs: options.legIoTimeoutMs };
    const blocks = Math.floor(sizeOf(this.shape.root) / BLOCK);
    this.checker = new Checker(blocks, this.model, (line) => this.trace.event(line));
    for (const spec of walk(this.shape.root)) {
      if (spec.kind === "leaf") this.leaves.set(spec.id, new LeafNode(this, spec));
      if (spec.kind === "storage") {
        this.exporters.set(
          spec.id,
          new Exporter(this, spec.id, spec.root, true, this.tuning, this),
        );
      }
    }
    this.root = new Exporter(this, "root", this.shape.root, false, this.tuning, this);
    this.exporters.set("root", this.root);
    if (!this.gaps) { for (const [a, b] of this.guard.calmPairs()) this.network.calm(a, b); }
    this.workload = new Workload(
      drawMix(this.rng("mix")),
      this.rng("workload"),
      this.checker,
      this.own,
      () => this.root.state === "up" ? this.root.device : undefined,
      (line) => this.trace.event(line),
    );
  }

  // ---- SimHost ----

  process(name: string): SimProcess {
    const n = (this.#incarnations.get(name) ?? 0) + 1;
    this.#incarnations.set(name, n);
    this.trace.event(`${name} starts (#${n})`);
    return new SimProcess(name, n, this.seed, this.sim, this.network, this.trace);
  }

  rng(label: string): Rng {
    return fork(this.seed, label);
  }

  fail(what: string): void {
    this.checker.fail(what);
  }

  stamped(leaf: string, state: MediaState): void {
    this.guard.stamped(leaf, state.generations);
  }

  get failed(): boolean {
    return this.checker.failures.length > 0;
  }

  // ---- ExporterObserver ----

  legMoved(mirror: string, status: LegStatus): void {
    const was = this.model.legs.get(mirror)?.get(status.name)?.state;
    this.guard.moved(mirror, status.name, was, status.state);
    this.model.legMoved(mirror, status.name, status.state, this.checker.tick());
    this.trace.event(
      `${mirror}/${status.name} ${status.state}${status.reason ? `: ${status.reason}` : ""}`,
    );
    this.relax();
  }

  /**
   * Unless the run exposes design gaps: while the storage is close to one (gaps.ts), the
   * network is calm (and the injector waits), until every leg is back.
   */
  relax(): void {
    if (this.gaps || this.healing) return;
    if (this.#calmFor !== undefined === (this.guard.strained() !== undefined)) return;
    const why = this.guard.strained();
    if (why !== undefined) {
      this.#calmFor = why;
      this.#rates = this.network.rates;
      this.network.setRates(CALM);
      this.trace.event(`calm: ${why}`);
    } else if (this.#rates !== undefined) {
      this.#calmFor = undefined;
      this.network.setRates(this.#rates);
      this.trace.event("calm over");
    }
  }

  /** The seed's network faults begin (the tree is up). */
  faults(): void {
    this.network.setRates(this.#faultRates);
  }

  /** The network faults the seed draws. */
  get faultRates(): NetworkRates {
    return this.#faultRates;
  }

  /** Why the network is calm now (see relax), if it is. */
  get calmFor(): string | undefined {
    return this.#calmFor;
  }

  legRead(mirror: string, leg: string, offset: number, length: number) {
    if (offset % BLOCK !== 0 || length % BLOCK !== 0 || length === 0) return undefined;
    const path = [...this.model.path(mirror), [mirror, leg] as [string, string]];
    const since = path.map(([m, l]) => this.model.inSyncSince(m, l));
    if (since.some((s) => s === undefined)) return undefined;
    const base = this.model.bases().get(mirror);
    if (base === undefined) return undefined;
    this.checker.stats.legReads++;
    const watch = this.checker.readStart(base + offset, length, `read of ${mirror}/${leg}`, false);
    // A leg that left the in-sync set meanwhile (a crash lost what it had not synced) answers
    // what it holds now: the mirror gave up on that read when the leg left, so it is not judged.
    const stayed = () => path.every(([m, l], i) => this.model.inSyncSince(m, l) === since[i]);
    return (data: Uint8Array | undefined) =>
      this.checker.readEnd(watch, stayed() ? data : undefined);
  }

  down(mirrors: readonly string[]): void {
    this.model.forget(mirrors);
  }

  // ---- the tree now ----

  /** Leaves and storages in the tree now (legs removed by the operator are not). */
  inTree(): Spec[] {
    return walk(this.shape.root);
  }

  treeLeaves(): LeafNode[] {
    return this.inTree().filter((s) => s.kind === "leaf").map((s) => this.leaves.get(s.id)!);
  }

  treeExporters(): Exporter[] {
    const storages = this.inTree().filter((s) => s.kind === "storage").map((s) =>
      this.exporters.get(s.id)!
    );
    return [...storages, this.root];
  }

  /** Every running mirror, with the exporter that runs it. */
  runningMirrors(): { exporter: Exporter; id: string; running: RunningMirror }[] {
    const out: { exporter: Exporter; id: string; running: RunningMirror }[] = [];
    for (const exporter of this.treeExporters()) {
      if (exporter.state !== "up") continue;
      for (const [id, running] of exporter.mirrors) out.push({ exporter, id, running });
    }
    return out;
  }

  /** The exporter that assembles mirror `id` (the process whose tree holds it). */
  exporterOf(mirror: string): Exporter | undefined {
    for (const e of this.treeExporters()) {
      if (walk(e.spec).some((s) => s.id === mirror && !this.#behindStorage(e.spec, s.id))) {
        return e;
      }
    }
    return undefined;
  }

  #behindStorage(root: Spec, id: string): boolean {
    return walk(root).some((s) => s.kind === "storage" && walk(s.root).some((x) => x.id === id));
  }

  // ---- crashes and restarts ----

  crashLeaf(leaf: LeafNode, media: boolean): void {
    if (media) leaf.replace();
    else leaf.crash();
    const at = this.checker.tick();
    this.model.crashedAt.set(leaf.id, at);
    if (media) this.model.replacedAt.set(leaf.id, at);
    this.checker.lost(this.model.blocksOf(leaf.id, this.checker.blocks), media);
  }

  crashExporter(exporter: Exporter): void {
    exporter.crash();
    if (exporter === this.root) this.workload.abandon();
  }

  /** Starts a leaf after `ms`, unless it is up by then. */
  restartLeaf(leaf: LeafNode, ms: number): void {
    this.own.setTimeout(() => {
      if (this.restarting && leaf.state === "down") void leaf.start();
    }, ms);
  }

  /** Starts an exporter after `ms`, and again with backoff for as long as it fails to. */
  restartExporter(exporter: Exporter, ms: number, attempt = 0): void {
    this.own.setTimeout(async () => {
      if (!this.restarting || exporter.state !== "down") return;
      const up = await exporter.start();
      if (up) this.guard.started(exporter);
      if (!up && this.restarting && exporter.state === "down") {
        this.restartExporter(
          exporter,
          Math.min(5000, 200 * 2 ** Math.min(attempt, 5)),
          attempt + 1,
        );
      }
    }, ms);
  }

  /** A new leaf process (fresh media) to add as a mirror leg. */
  spare(size: number): LeafNode {
    const spec: LeafSpec = { kind: "leaf", id: `spare${++this.#spares}`, size };
    const leaf = new LeafNode(this, spec);
    this.leaves.set(spec.id, leaf);
    return leaf;
  }

  /** Kills every process (end of the seed). */
  dispose(): void {
    this.restarting = false;
    for (const e of this.exporters.values()) e.crash();
    for (const l of this.leaves.values()) if (l.state !== "down") l.crash();
  }

  /** Runs the simulation until `promise` settles (bounded by `ms` of simulated time). */
  async settle<T>(promise: Promise<T>, ms: number, what: string): Promise<T | undefined> {
    let done = false;
    let value: T | undefined;
    let error: unknown;
    promise.then((v) => (value = v), (e) => (error = e ?? new Error("rejected"))).finally(() =>
      done = true
    );
    await this.driver.run(this.sim.now() + ms, () => done);
    if (!done) {
      this.fail(`${what}: not done within ${ms} ms of simulated time`);
      return undefined;
    }
    if (error !== undefined) throw error;
    return value;
  }

  device(): BlockDevice | undefined {
    return this.root.state === "up" ? this.root.device : undefined;
  }
}
