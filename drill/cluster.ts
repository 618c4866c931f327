/**
 * The exporters of a drill's storage when they elect the active one through etcd: which one is
 * active now (it answers, says it is active, and its process neither hangs nor has ended), the
 * NBD URI a reconnecting client uses, when each was elected (from its own log), and the
 * failover measures of a fault on the active one: time to detect (until another exporter is
 * elected), time to take over (until that one serves in sync) and until the client's writes
 * were acknowledged again.
 */
import type { Fault, FaultMeasure } from "./measure.ts";
import type { DrillProcess } from "./process.ts";
import type { Sample } from "./status.ts";

export class ExporterGroup {
  /** When each exporter said it was elected, in drill time. */
  readonly elections: { exporter: string; t: number }[] = [];

  constructor(
    readonly exporters: readonly string[],
    readonly procs: ReadonlyMap<string, DrillProcess>,
    readonly nbdSockets: ReadonlyMap<string, string>,
    readonly latest: (serve: string) => Sample | undefined,
    readonly now: () => number,
  ) {}

  /** Watches each exporter's log for its election and for its fencing. */
  watch(onElected: (exporter: string) => void, onFenced: (exporter: string, line: string) => void) {
    for (const e of this.exporters) {
      this.procs.get(e)!.onLine = (line) => {
        if (line.includes("elected: the active exporter")) {
          this.elections.push({ exporter: e, t: this.now() });
          onElected(e);
        } else if (line.includes("this exporter was fenced")) onFenced(e, line);
      };
    }
  }

  /** The exporter serving now, if any. */
  active(): string | undefined {
    return this.exporters.find((e) => {
      const p = this.procs.get(e)!;
      const s = this.latest(e);
      return p.running && !p.hung && s?.state !== undefined && s.role === "active";
    });
  }

  /** Where a client attaches now: the active exporter's export. */
  uri(): string | undefined {
    const active = this.active();
    return active === undefined
      ? undefined
      : `nbd+unix:///dst?socket=${this.nbdSockets.get(active)!}`;
  }

  inSync(): boolean {
    const active = this.active();
    return active !== undefined && this.latest(active)?.state === "in-sync";
  }

  /**
   * A fault on `fault.process` (an exporter): detected when another exporter was elected,
   * taken over once that one answered active and in sync, and the client's writes back once a
   * write round was acknowledged after the fault.
   */
  measure(fault: Fault, samples: readonly Sample[], writesOk: readonly number[]): FaultMeasure {
    const elected = this.elections.find((e) => e.t >= fault.at && e.exporter !== fault.process);
    const serving = elected === undefined
      ? undefined
      : samples.find((s) =>
        s.serve === elected.exporter && s.t >= elected.t && s.role === "active" &&
        s.state === "in-sync"
      );
    const client = writesOk.find((t) => t >= fault.at);
    const ms = (t: number | undefined) => t === undefined ? undefined : Math.round(t - fault.at);
    const detectMs = ms(elected?.t);
    const takeoverMs = ms(serving?.t);
    const clientMs = ms(client);
    return {
      step: fault.step,
      action: fault.action,
      process: fault.process,
      ...(fault.healAction === undefined ? {} : { healAction: fault.healAction }),
      atMs: Math.round(fault.at),
      ...(detectMs === undefined ? {} : { detectMs }),
      // The storage recovered when the other exporter took over, not when this one came back.
      ...(takeoverMs === undefined ? {} : { recoverMs: takeoverMs, takeoverMs }),
      ...(clientMs === undefined ? {} : { clientMs }),
      ...(elected === undefined ? {} : { takenOverBy: elected.exporter }),
      notes: fault.notes,
    };
  }
}
