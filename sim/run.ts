/**
 * One seed, start to end: build the tree, run the workload under the seed's faults for the
 * asked simulated time, heal, converge, check. The result carries the trace digest (equal for
 * two runs of one seed), and for a failure the fault schedule and the last events.
 */
import { drawPlan, FaultInjector } from "./faults.ts";
import { finalChecks, heal } from "./heal.ts";
import { SimLimitError } from "./scheduler.ts";
import { measure } from "./topology.ts";
import { World } from "./world.ts";

export interface SeedOptions {
  /** Simulated milliseconds of workload under faults. */
  readonly ticks?: number;
  readonly verbose?: boolean;
  readonly maxSteps?: number;
  /** Also inject the faults that trip known design gaps (see gaps.ts). */
  readonly gaps?: boolean;
  /**
   * Forces mirror legs' proxy I/O timeout instead of the seed's draw: 0 replays a seed kept
   * from before that was drawn (sim/regressions.ts) with the history it was found with.
   */
  readonly legIoTimeoutMs?: number;
  /**
   * The gap guard's rotation headroom (gaps.ts): faults that would add a rotation are held back
   * once a leg is out for this many (default 2; Infinity guards only a leg out of the serving
   * legs' history altogether).
   */
  readonly rotationHeadroom?: number;
  /** Every seed builds a parity shape (topology.ts: drawParity). */
  readonly parity?: boolean;
}

export interface SeedResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failures: readonly string[];
  readonly digest: string;
  readonly events: number;
  readonly simMs: number;
  readonly family: string;
  readonly nodes: number;
  readonly levels: number;
  readonly ops: number;
  readonly steps: number;
  /** For a failure: what was injected, and the last events. */
  readonly schedule?: readonly string[];
  readonly tail?: readonly string[];
}

export const DEFAULT_TICKS = 20_000;

/** Setup bound: the tree must be up this soon (simulated). */
const SETUP_MS = 60_000;

let current: World | undefined;

// A rejection nobody handles is a bug of the code under test: it fails the seed, never the run.
globalThis.addEventListener("unhandledrejection", (event) => {
  if (current === undefined) return; // not a seed's: the runner's own error, reported as such
  event.preventDefault();
  const reason = event.reason as Error | undefined;
  current?.fail(`unhandled rejection: ${reason?.stack ?? String(event.reason)}`);
});

export async function runSeed(seed: number, options: SeedOptions = {}): Promise<SeedResult> {
  const w = new World({
    seed,
    ...(options.verbose === undefined ? {} : { verbose: options.verbose }),
    ...(options.maxSteps === undefined ? {} : { maxSteps: options.maxSteps }),
    ...(options.gaps === undefined ? {} : { gaps: options.gaps }),
    ...(options.legIoTimeoutMs === undefined ? {} : { legIoTimeoutMs: options.legIoTimeoutMs }),
    ...(options.rotationHeadroom === undefined
      ? {}
      : { rotationHeadroom: options.rotationHeadroom }),
    ...(options.parity === undefined ? {} : { parity: options.parity }),
  });
  current = w;
  const faults = new FaultInjector(w, drawPlan(w.rng("plan")), w.rng("faults"));
  const { nodes, levels } = measure(w.shape.root);
  w.trace.event(`seed ${seed}: ${w.shape.family}, ${nodes} nodes, ${levels} levels`);
  w.trace.event(`tree ${JSON.stringify(w.shape.root)}`);
  w.trace.event(`tuning ${JSON.stringify(w.tuning)} network ${JSON.stringify(w.faultRates)}`);
  w.trace.event(`workload ${JSON.stringify(w.workload.mix)} faults ${JSON.stringify(faults.plan)}`);
  try {
    for (const leaf of w.treeLeaves()) void leaf.start();
    for (const e of w.treeExporters()) w.restartExporter(e, 0);
    const up = await w.driver.run(SETUP_MS, () => w.failed || w.root.state === "up");
    if (!up) w.fail(`the storage did not start within ${SETUP_MS / 1000} s`);
    if (!w.failed) {
      w.workload.start();
      w.faults();
      faults.start();
      await w.driver.run(w.sim.now() + (options.ticks ?? DEFAULT_TICKS), () => w.failed);
    }
    if (!w.failed && await heal(w, faults)) await finalChecks(w, faults);
  } catch (error) {
    w.fail(
      error instanceof SimLimitError
        ? `the seed hit a bound of the simulator: ${error.message}`
        : `simulator error: ${(error as Error).stack ?? error}`,
    );
  } finally {
    faults.stop();
    w.workload.running = false;
    w.dispose();
    current = undefined;
  }
  const ok = !w.failed;
  return {
    seed,
    ok,
    failures: [...w.checker.failures],
    digest: w.trace.digest(),
    events: w.trace.count,
    simMs: w.sim.now(),
    family: w.shape.family,
    nodes,
    levels,
    ops: w.workload.ops,
    steps: w.driver.steps,
    ...(ok ? {} : { schedule: [...w.schedule], tail: w.trace.tail(120) }),
  };
}
