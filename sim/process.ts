/**
 * A simulated process: one incarnation of a node or an exporter, with its own clock, transport,
 * randomness and logger. Killing it is a crash: its timers are gone, its connections reset, its
 * listener closed, and it can no longer dial; what it left half done never completes.
 */
import type { Transport } from "../transport/types.ts";
import type { Logger } from "../util/log.ts";
import { ProcessClock, type SimClock } from "./scheduler.ts";
import type { SimNetwork } from "./network.ts";
import { fork, type Rng } from "./rng.ts";
import type { Trace } from "./trace.ts";

export class SimProcess {
  readonly clock: ProcessClock;
  readonly transport: Transport;
  readonly random: Rng;
  readonly logger: Logger;

  constructor(
    readonly name: string,
    readonly incarnation: number,
    seed: number,
    sim: SimClock,
    readonly network: SimNetwork,
    trace: Trace,
  ) {
    this.clock = new ProcessClock(sim);
    this.transport = network.transport(name, () => this.clock.alive);
    this.random = fork(seed, `${name}#${incarnation}`);
    this.logger = trace.logger(`${name}#${incarnation}`);
  }

  get alive(): boolean {
    return this.clock.alive;
  }

  /** The process dies at once (a crash, or a start that failed). */
  kill(): void {
    if (!this.clock.alive) return;
    this.clock.kill();
    this.network.crash(this.name);
  }
}
