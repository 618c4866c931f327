/**
 * Detect and recover times of a drill's faults, worked out afterwards from the status samples:
 * detect is from the fault to the first sample of the parent mirror showing the leg not in sync
 * (for the export process itself: its endpoint not answering); recover is from the healing step
 * to the first sample showing the leg in sync again (for the export: answering and in sync). The
 * resync bytes are the leg's counters moved over that span.
 */
import type { LegSample, Sample } from "./status.ts";

export interface Fault {
  /** Index of the step in the timeline. */
  readonly step: number;
  readonly action: string;
  readonly process: string;
  /** The serve whose mirror has the process as a leg; undefined for the export process. */
  readonly parent: string | undefined;
  readonly at: number;
  healAt?: number;
  healAction?: string;
  notes: string[];
}

export interface FaultMeasure {
  readonly step: number;
  readonly action: string;
  readonly process: string;
  readonly healAction?: string;
  readonly atMs: number;
  readonly detectMs?: number;
  readonly recoverMs?: number;
  /** Bytes the leg's resyncs settled and actually copied while it recovered. */
  readonly resyncedBytes?: number;
  readonly copiedBytes?: number;
  /** The next fault on the same process came before this one recovered. */
  readonly interrupted?: boolean;
  /** A fault on the active exporter of a cluster: until another one served in sync. */
  readonly takeoverMs?: number;
  /** ... and until the client's writes were acknowledged again. */
  readonly clientMs?: number;
  readonly takenOverBy?: string;
  readonly notes: readonly string[];
}

const legOf = (s: Sample, leg: string): LegSample | undefined => s.legs.find((l) => l.name === leg);

/**
 * Measures one fault; `next` is when the next fault on the same process began (a recovery seen
 * only after it belongs to that one, and this fault counts as interrupted).
 */
export function measure(
  fault: Fault,
  samples: readonly Sample[],
  next = Infinity,
): FaultMeasure {
  const serve = fault.parent ?? fault.process;
  const mine = samples.filter((s) => s.serve === serve);
  const isOut = (s: Sample) =>
    fault.parent === undefined
      ? s.state === undefined
      : s.state !== undefined && legOf(s, fault.process)?.state !== "in-sync";
  const isIn = (s: Sample) =>
    fault.parent === undefined
      ? s.state === "in-sync"
      : legOf(s, fault.process)?.state === "in-sync";
  const detected = mine.find((s) => s.t >= fault.at && isOut(s));
  const before = [...mine].reverse().find((s) => s.t < fault.at && s.state !== undefined);
  const seen = fault.healAt === undefined
    ? undefined
    : mine.find((s) => s.t >= fault.healAt! && isIn(s));
  const recovered = seen !== undefined && seen.t < next ? seen : undefined;
  const interrupted = fault.healAt !== undefined && recovered === undefined && next < Infinity;
  const bytes = (s: Sample | undefined, key: "resyncedBytes" | "copiedBytes") => {
    if (s === undefined) return undefined;
    if (fault.parent === undefined) {
      // A restarted export counts afresh: every leg's totals in the new process.
      return s.legs.reduce((sum, l) => sum + (l[key] ?? 0), 0);
    }
    return legOf(s, fault.process)?.[key];
  };
  const delta = (key: "resyncedBytes" | "copiedBytes") => {
    const after = bytes(recovered, key);
    if (after === undefined) return undefined;
    return fault.parent === undefined ? after : after - (bytes(before, key) ?? 0);
  };
  const resyncedBytes = delta("resyncedBytes");
  const copiedBytes = delta("copiedBytes");
  return {
    step: fault.step,
    action: fault.action,
    process: fault.process,
    ...(fault.healAction === undefined ? {} : { healAction: fault.healAction }),
    atMs: Math.round(fault.at),
    ...(detected === undefined ? {} : { detectMs: Math.round(detected.t - fault.at) }),
    ...(recovered === undefined ? {} : { recoverMs: Math.round(recovered.t - fault.healAt!) }),
    ...(resyncedBytes === undefined ? {} : { resyncedBytes }),
    ...(copiedBytes === undefined ? {} : { copiedBytes }),
    ...(interrupted ? { interrupted: true } : {}),
    notes: interrupted ? [...fault.notes, "interrupted by the next fault"] : fault.notes,
  };
}
