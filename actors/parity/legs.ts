/**
 * What parity I/O asks of its legs, through the mirror core that owns their state: which legs
 * can be read (in sync) or take writes (in sync or rebuilding), the clean EIO when too few are in
 * sync to serve, and one timed leg read or write whose failure fails that leg (never the client,
 * while enough legs remain).
 */
import { BlockError } from "../block/contract.ts";
import type { MirrorCore } from "../mirror/core.ts";
import { describe } from "../mirror/errors.ts";
import { fencedError } from "../mirror/fencing.ts";
import type { Leg } from "../mirror/leg.ts";

/** A leg can be read: it is in sync (a rebuilding leg's units are reconstructed instead). */
export function readable(leg: Leg): boolean {
  return leg.state === "in-sync";
}

/** The EIO a client hears when fewer legs than needed are in sync (two out, for RAID 5). */
export function tooFewLegs(core: MirrorCore, what: string, cause?: unknown): BlockError {
  const need = core.layout.needInSync(core.legs.length);
  const out = core.legs.filter((l) => l.state !== "in-sync").map((l) =>
    `${l.name} (${l.state}${l.reason === undefined ? "" : `: ${l.reason}`})`
  );
  const last = cause === undefined ? "" : `; last error: ${describe(cause)}`;
  return new BlockError(
    "EIO",
    `${what}: parity needs ${need} of ${core.legs.length} legs in sync and ${out.length} are not: ` +
      `${out.join(", ")}${last}`,
  );
}

/** Throws when the storage cannot serve: fenced, or too few legs in sync. */
export function checkServing(core: MirrorCore, what: string): void {
  if (core.fenced !== undefined) throw fencedError(what, core.fenced);
  if (core.inSyncCount() < core.layout.needInSync(core.legs.length)) throw tooFewLegs(core, what);
}

/** A leg operation that failed; the leg was failed at the epoch it was sent under. */
export interface LegFailure {
  readonly leg: Leg;
  readonly error: unknown;
}

/** Reads leg bytes [offset, offset+length) into `into`, timed; records stats. */
export async function legRead(
  core: MirrorCore,
  leg: Leg,
  offset: number,
  length: number,
  into: Uint8Array,
): Promise<Uint8Array> {
  const started = core.clock.now();
  const data = await core.timed(leg, leg.device.read(offset, length, into));
  leg.reads++;
  leg.latency.read.record(core.clock.now() - started);
  return data;
}

/** Writes `data` at leg byte `offset`, timed; records stats. */
export async function legWrite(
  core: MirrorCore,
  leg: Leg,
  offset: number,
  data: Uint8Array,
  fua: boolean,
): Promise<void> {
  const started = core.clock.now();
  await core.timed(leg, leg.device.write(offset, data, fua));
  leg.latency.write.record(core.clock.now() - started);
}

/**
 * Runs `ops` (each on one leg) at once. Every leg whose op failed is failed at its `epoch`
 * (unless the core was fenced meanwhile: then nothing is any leg's fault). Returns the failures.
 */
export async function settleOnLegs(
  core: MirrorCore,
  what: string,
  ops: readonly { readonly leg: Leg; readonly epoch: number; readonly run: Promise<unknown> }[],
): Promise<LegFailure[]> {
  const results = await Promise.allSettled(ops.map((o) => o.run));
  if (core.fenced !== undefined) throw fencedError(what, core.fenced);
  const failed: LegFailure[] = [];
  results.forEach((r, i) => {
    if (r.status === "fulfilled") return;
    const { leg, epoch } = ops[i]!;
    if (!failed.some((f) => f.leg === leg)) failed.push({ leg, error: r.reason });
    core.fail(leg, epoch, `${what} failed: ${describe(r.reason)}`);
  });
  return failed;
}
