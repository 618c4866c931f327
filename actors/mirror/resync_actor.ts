/**
 * The resync task as an actor: a child of its mirror (under a supervisor of its own, which
 * restarts it with backoff when it crashes), copying the chunks one rebuilding leg lacks. It
 * takes its work from the mirror when it starts (so a restart resumes from what the mirror knows
 * landed), reports landed chunks once the target flushed them, and reports completion and
 * failures as messages. It never changes a leg: the mirror decides what each report means, and
 * drops reports of an epoch the leg has left.
 */
import type { Behavior } from "../runtime/behavior.ts";
import type { ActorRef } from "../runtime/ref.ts";
import { BlockError } from "../block/contract.ts";
import type { Clock } from "../../util/clock.ts";
import type { ChunkBits } from "./chunk_bits.ts";
import type { Recreate } from "./layout.ts";
import { describe } from "./errors.ts";
import {
  ResyncAborted,
  type ResyncPace,
  type ResyncSide,
  type ResyncStats,
  runResync,
} from "./resync_copy.ts";

/** What a resync reports to its mirror; `leg` and `epoch` name the rebuilding it serves. */
export type ResyncReport =
  /** These chunks landed on the target and the target flushed them. */
  | {
    readonly t: "settled";
    readonly leg: string;
    readonly epoch: number;
    readonly chunks: readonly number[];
    readonly stats: ResyncStats;
  }
  /** Every chunk it was given landed and is flushed. */
  | {
    readonly t: "copied";
    readonly leg: string;
    readonly epoch: number;
    readonly stats: ResyncStats;
  }
  /** A source failed a read (the mirror fails that leg; the copy goes on from another). */
  | {
    readonly t: "source-failed";
    readonly leg: string;
    readonly epoch: number;
    readonly source: string;
    readonly sourceEpoch: number;
    readonly why: string;
  }
  /** The target failed, or no source is left. */
  | { readonly t: "failed"; readonly leg: string; readonly epoch: number; readonly why: string };

/** The work of one resync, as the mirror hands it out. */
export interface ResyncWork {
  readonly target: ResyncSide;
  /** The chunks the target lacks now (a copy: the resync clears it as it goes). */
  readonly need: ChunkBits;
  readonly chunkSize: number;
  readonly size: number;
  /** How a chunk is recreated on the target (layout.ts); undefined: copied from a source. */
  readonly recreate?: Recreate;
}

/** The mirror's services a resync uses (in-process: the mirror is its grandparent). */
export interface ResyncPort {
  /** The work for `leg` at `epoch`, or undefined when that rebuilding is over. */
  work(leg: string, epoch: number): ResyncWork | undefined;
  /** Is `leg` still rebuilding at `epoch`? */
  wanted(leg: string, epoch: number): boolean;
  /**
   * An in-sync leg to copy from, or undefined when none is left; never one of `failed` (sides
   * this resync saw fail, as `name#epoch`, while the mirror has not yet taken them out).
   */
  source(failed: ReadonlySet<string>): ResyncSide | undefined;
  lock<T>(offset: number, length: number, fn: () => Promise<T>): Promise<T>;
  clientOps(): number;
  timed<T>(side: ResyncSide, op: Promise<T>): Promise<T>;
  readonly clock: Clock;
  readonly pace: ResyncPace;
}

export interface ResyncWorkerSpec {
  readonly port: ResyncPort;
  readonly mirror: ActorRef<{ readonly op: "resync"; readonly report: ResyncReport }>;
  readonly leg: string;
  readonly epoch: number;
}

/** Settled chunks are reported after this many land, or this long after the last report. */
const REPORT_BYTES = 64 * 1024 * 1024;
const REPORT_MS = 200;

/** The resync worker's behaviour; it takes no messages, it only works and reports. */
export function resyncWorker(spec: ResyncWorkerSpec): Behavior<unknown> {
  return (ctx) => {
    const { port, leg, epoch } = spec;
    const report = (r: ResyncReport) => ctx.tell(spec.mirror, { op: "resync", report: r });
    let stopped = false;
    const work = port.work(leg, epoch);
    if (work === undefined) {
      ctx.stop();
      return { receive: () => {} };
    }
    const stats: ResyncStats = {
      bytesTotal: work.need.count() * work.chunkSize,
      bytesDone: 0,
      bytesCopied: 0,
      chunksSkipped: 0,
      startedAt: port.clock.now(),
      rateBytesPerSec: 0,
    };
    const perReport = Math.max(8, Math.floor(REPORT_BYTES / work.chunkSize));
    let landed: number[] = [];
    let lastReport = port.clock.now();
    /** Reports go out in order, each after a flush of the target covering its chunks. */
    let reporting: Promise<void> = Promise.resolve();
    const settle = () => {
      const chunks = landed;
      landed = [];
      lastReport = port.clock.now();
      reporting = reporting.then(async () => {
        await port.timed(work.target, work.target.device.flush());
        if (!stopped) report({ t: "settled", leg, epoch, chunks, stats: { ...stats } });
      });
      return reporting;
    };

    const failedSources = new Set<string>();
    const run = async (): Promise<void> => {
      try {
        await runResync({
          source: () => port.source(failedSources),
          sourceFailed: (side, error) => {
            failedSources.add(`${side.name}#${side.epoch}`);
            report({
              t: "source-failed",
              leg,
              epoch,
              source: side.name,
              sourceEpoch: side.epoch,
              why: `resync read failed: ${describe(error)}`,
            });
          },
          target: work.target,
          need: work.need,
          ...(work.recreate === undefined ? {} : { recreate: work.recreate }),
          chunkSize: work.chunkSize,
          size: work.size,
          lock: (o, l, fn) => port.lock(o, l, fn),
          wanted: () => !stopped && port.wanted(leg, epoch),
          landed: (c) => {
            landed.push(c);
            if (landed.length >= perReport || port.clock.now() - lastReport >= REPORT_MS) {
              void settle().catch(() => {});
            }
          },
          clientOps: () => port.clientOps(),
          timed: (side, op) => port.timed(side, op),
          clock: port.clock,
          pace: port.pace,
        }, stats);
        await settle();
        if (!stopped) report({ t: "copied", leg, epoch, stats: { ...stats } });
      } catch (error) {
        // The leg's own trouble (a failed or late target, no source left) is the mirror's to
        // judge; anything else is a bug in this actor: crash, and the supervisor restarts it.
        if (!(error instanceof BlockError || error instanceof ResyncAborted)) throw error;
        if (!stopped && port.wanted(leg, epoch)) {
          report({ t: "failed", leg, epoch, why: `resync failed: ${describe(error)}` });
        }
      } finally {
        await reporting.catch(() => {});
      }
      ctx.stop();
    };
    ctx.defer(run());
    return {
      receive: () => {},
      stopped: () => {
        stopped = true;
      },
    };
  };
}
