/**
 * The mirror's side of its resync actors: the work and sources it hands them (resync_actor.ts's
 * port), and what their reports do. Landed chunks leave the leg's need only while the leg is
 * still rebuilding at the report's epoch; when all landed, the leg is flushed, stamped and
 * rejoins, unless it lacks more by then (it then goes again).
 */
import type { MirrorCore } from "./core.ts";
import { describe } from "./errors.ts";
import type { Leg } from "./leg.ts";
import type { ResyncPort, ResyncReport, ResyncWork } from "./resync_actor.ts";
import type { ResyncSide, ResyncStats } from "./resync_copy.ts";
import { withDeadline } from "./leg_deadline.ts";
import type { Clock } from "../../util/clock.ts";

/** The port a resync actor of `core` works through. */
export function resyncPort(core: MirrorCore, clock: Clock): ResyncPort {
  return {
    work: (leg, epoch) => work(core, leg, epoch),
    wanted: (leg, epoch) => wanted(core, leg, epoch),
    source: (failed) => {
      const leg = pickSource(core, failed);
      return leg === undefined ? undefined : side(leg);
    },
    // Leg bytes to the device bytes they carry (a row of parity units carries K of them).
    lock: (o, l, fn) => {
      const k = core.size / core.legBytes;
      return core.lock(o * k, l * k, fn);
    },
    clientOps: () => core.clientOps,
    timed: <T>(s: ResyncSide, op: Promise<T>) =>
      withDeadline(core.clock, core.timeoutMs, s.name, op),
    clock,
    pace: core.pace,
  };
}

function work(core: MirrorCore, name: string, epoch: number): ResyncWork | undefined {
  const leg = core.legs.find((l) => l.name === name);
  if (leg === undefined || !wanted(core, name, epoch)) return undefined;
  leg.resync ??= {
    source: pickSource(core, new Set())?.name ?? "?",
    stats: {
      bytesTotal: leg.need!.count() * core.chunkSize,
      bytesDone: 0,
      bytesCopied: 0,
      chunksSkipped: 0,
      startedAt: core.clock.now(),
      rateBytesPerSec: 0,
    },
  };
  return {
    target: side(leg),
    need: leg.need!.copy(),
    chunkSize: core.chunkSize,
    size: core.legBytes,
    ...(core.layout.recreate === undefined ? {} : { recreate: core.layout.recreate(core) }),
  };
}

function wanted(core: MirrorCore, name: string, epoch: number): boolean {
  const leg = core.legs.find((l) => l.name === name);
  return !core.closed && leg !== undefined && leg.state === "rebuilding" && leg.epoch === epoch;
}

/** An in-sync leg to copy from (one with media first: digests then spare the copy). */
function pickSource(core: MirrorCore, failed: ReadonlySet<string>): Leg | undefined {
  const usable = core.legs.filter((l) =>
    l.state === "in-sync" && !failed.has(`${l.name}#${l.epoch}`)
  );
  return usable.find((l) => l.media !== undefined) ?? usable[0];
}

function side(leg: Leg): ResyncSide {
  return { name: leg.name, device: leg.device, media: leg.media, epoch: leg.epoch };
}

/** A report from a resync actor. */
export function onResync(core: MirrorCore, report: ResyncReport): void {
  const leg = core.legs.find((l) => l.name === report.leg);
  if (leg === undefined) return;
  switch (report.t) {
    case "source-failed": {
      const source = core.legs.find((l) => l.name === report.source);
      if (source !== undefined) core.fail(source, report.sourceEpoch, report.why);
      return;
    }
    case "failed":
      core.dispatch(leg, { t: "resync-failed", why: report.why }, report.epoch);
      return;
    case "settled": {
      if (leg.state !== "rebuilding" || leg.epoch !== report.epoch) return;
      core.landed(leg, report.chunks);
      progress(core, leg, report.stats);
      return;
    }
    case "copied":
      if (leg.state !== "rebuilding" || leg.epoch !== report.epoch) return;
      progress(core, leg, report.stats);
      core.background("ending a resync", finish(core, leg, report.epoch));
      return;
  }
}

function progress(core: MirrorCore, leg: Leg, stats: ResyncStats): void {
  leg.resync = { source: pickSource(core, new Set())?.name ?? "?", stats };
}

/**
 * The resync copied everything: once the writes begun while the leg was out have recorded
 * their misses (a moment with the whole device locked), a leg that lacks nothing is flushed,
 * stamped a member at the current generations, and rejoins; one that lacks more goes again.
 */
async function finish(core: MirrorCore, leg: Leg, epoch: number): Promise<void> {
  const again = () => {
    core.resyncs.stop(leg.name);
    core.resyncs.start(leg.name, epoch);
  };
  await core.lock(0, core.size, () => Promise.resolve());
  if (leg.epoch !== epoch) return;
  if (!leg.need!.isEmpty()) return again();
  try {
    await core.timed(leg, leg.device.flush());
    if (leg.epoch !== epoch) return;
    if (core.persist && leg.media !== undefined) {
      await core.gen.stamp(leg);
      await core.timed(leg, leg.media.storeBitmap(0, core.bitmap.bits.bytes));
    }
  } catch (error) {
    core.fail(leg, epoch, `finishing its resync failed: ${describe(error)}`);
    return;
  }
  // Writes begun during the flush and the stamp went to this leg too: it joins only once they
  // ended (a write it failed or missed takes it out, or marks what it lacks), in one turn under
  // the whole device's lock, so no write is in flight to it while it moves.
  const joined = await core.lock(0, core.size, () => {
    if (leg.epoch !== epoch || !leg.need!.isEmpty()) return Promise.resolve(undefined);
    leg.adopt = false;
    const stats = leg.resync?.stats;
    leg.resyncedBytes += stats?.bytesDone ?? 0;
    leg.copiedBytes += stats?.bytesCopied ?? 0;
    leg.lastResync = {
      bytes: stats?.bytesDone ?? 0,
      copied: stats?.bytesCopied ?? 0,
      at: core.clock.now(),
    };
    leg.resync = undefined;
    core.dispatch(leg, { t: "resynced" }, epoch);
    return Promise.resolve({ stats });
  });
  if (joined === undefined) {
    if (leg.epoch === epoch) again();
    return;
  }
  const { stats } = joined;
  core.logger.log("info", "resync done: leg is in sync", {
    leg: leg.name,
    bytes: stats?.bytesDone ?? 0,
    copied: stats?.bytesCopied ?? 0,
    skipped: stats?.chunksSkipped ?? 0,
  });
  // A rotation may have stamped the serving legs while this one was being stamped.
  if (core.persist && leg.known?.generations.current !== core.gen.current?.current) {
    void core.gen.stamp(leg).catch((error) =>
      core.fail(leg, leg.epoch, `metadata update failed: ${describe(error)}`)
    );
  }
}
