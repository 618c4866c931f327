/**
 * What the simulated processes need from the simulation around them: the clock, the network,
 * the trace, new process incarnations, and a way to report a failure of the seed.
 */
import type { MediaState } from "../actors/block/contract.ts";
import type { SimNetwork } from "./network.ts";
import type { SimProcess } from "./process.ts";
import type { Driver, ProcessClock, SimClock } from "./scheduler.ts";
import type { Rng } from "./rng.ts";
import type { Trace } from "./trace.ts";

export interface SimHost {
  readonly seed: number;
  readonly sim: SimClock;
  readonly driver: Driver;
  readonly network: SimNetwork;
  readonly trace: Trace;
  /** The cluster secret every link proves. */
  readonly secret: string;
  /** The simulation's own clock (never killed): for restarts and the workload. */
  readonly own: ProcessClock;
  /** A new incarnation of process `name`. */
  process(name: string): SimProcess;
  rng(label: string): Rng;
  /** The seed failed: `what` says why. */
  fail(what: string): void;
  /** A node's media took new generations. */
  stamped(leaf: string, state: MediaState): void;
}
