/**
 * What a leg's move sets off (leg_machine.ts names them): judging it, starting or stopping its
 * resync, stamping or forgetting its media. Each runs after the move under the leg's new epoch
 * and reports back through the core's dispatch, which drops the report if the leg moved on.
 */
import { NO_GENERATION } from "../block/media.ts";
import type { MirrorCore } from "./core.ts";
import { describe } from "./errors.ts";
import { targetFlags } from "./generations.ts";
import { decideVerdict, readFacts } from "./judge.ts";
import type { Leg } from "./leg.ts";
import type { Effect } from "./leg_machine.ts";

/** Runs `effect` of a move `leg` just made. */
export function runEffect(core: MirrorCore, effect: Effect, leg: Leg): void {
  const epoch = leg.epoch;
  switch (effect) {
    case "rotate":
      core.gen.mustRotate = true;
      if (core.persist) void core.gen.ensureRotated().catch(() => {});
      return;
    case "stop-resync":
      core.resyncs.stop(leg.name);
      return;
    case "judge":
      core.background("judging a leg", judge(core, leg, epoch));
      return;
    case "start-resync":
      core.background("starting a resync", startResync(core, leg, epoch));
      return;
    case "stamp":
      core.background("stamping a leg", stamp(core, leg, epoch));
      return;
    case "forget-media":
      core.background("clearing a leg's member flag", forgetMedia(core, leg, epoch));
      return;
    case "close":
      void leg.device.close().catch(() => {});
      return;
    case "settle-bitmap":
      if (core.bitmap.recompute() && core.persist) void core.bitmap.store().catch(() => {});
      return;
  }
}

/**
 * Reads what the leg holds, then decides and applies the verdict in one turn. Not before every
 * request sent to it earlier has settled (in_flight.ts): one the mirror gave up on may still
 * land, and must not land over what its resync copies or what is written after a readmission.
 */
export async function judge(core: MirrorCore, leg: Leg, epoch: number): Promise<void> {
  if (!(await leg.flight.settled(core.clock, core.timeoutMs))) {
    if (leg.epoch !== epoch || core.closed) return;
    const why = `waiting for ${leg.flight.count} request(s) sent to it before to end`;
    const outcome = core.dispatch(leg, { t: "judged", verdict: { kind: "out", why } }, epoch);
    if (outcome.kind !== "move") return;
    const out = leg.epoch;
    // Judged again once they ended (or at the next probe, whichever is first).
    leg.flight.whenIdle(() => {
      if (leg.epoch !== out || core.closed) return;
      core.background(
        "judging a leg",
        Promise.resolve().then(() => {
          core.dispatch(leg, { t: "reachable" }, out);
        }),
      );
    });
    return;
  }
  const facts = await readFacts(core, leg);
  if (leg.epoch !== epoch || core.closed) return;
  if (facts.kind === "media") leg.known = facts.state;
  const decide = () => {
    if (leg.epoch !== epoch || core.closed) return;
    core.dispatch(leg, { t: "judged", verdict: decideVerdict(core, leg, facts) }, epoch);
  };
  // The last in-sync leg may be taken back: only once no write is in flight, so a write that
  // it failed (or took) in its earlier life has ended and been accounted for first.
  if (core.down?.leg === leg) await core.lock(0, core.size, () => Promise.resolve(decide()));
  else decide();
}

/** Marks the leg's media a resync target (its need durable first), then starts its actor. */
async function startResync(core: MirrorCore, leg: Leg, epoch: number): Promise<void> {
  try {
    if (core.persist && leg.media !== undefined) {
      await core.bitmap.store();
      if (leg.epoch !== epoch) return;
      await markTarget(core, leg);
      if (leg.epoch !== epoch) return;
    }
    core.resyncs.start(leg.name, epoch);
  } catch (error) {
    core.fail(leg, epoch, `its resync could not start: ${describe(error)}`);
  }
}

/**
 * Before any chunk is copied, the target's media says it is a resync target: it is flagged
 * inconsistent, so it is never taken for a reference. A full resync target is stamped a member
 * at the generation the bitmap tracks from, every bit set: after a crash of either side it is
 * judged "bitmap" and resumes where its bits say, instead of starting over.
 */
async function markTarget(core: MirrorCore, leg: Leg): Promise<void> {
  let generations;
  if (leg.adopt) {
    if (core.gen.current === undefined || core.gen.current.bitmap === NO_GENERATION) {
      core.gen.mustRotate = true;
      await core.gen.ensureRotated();
    }
    generations = { current: core.gen.current!.bitmap, bitmap: NO_GENERATION, history: [] };
  }
  const expectCurrent = generations === undefined ? undefined : core.gen.expectedOn(leg);
  leg.known = await core.timed(
    leg,
    leg.media!.updateMedia({
      ...(expectCurrent === undefined ? {} : { expectCurrent }),
      ...(core.gen.storageId === undefined ? {} : { storageId: core.gen.storageId }),
      ...(generations === undefined ? {} : { generations }),
      flags: targetFlags(core.chunkSize),
    }),
  );
}

/** Stamps the leg's media a member at the current generations. */
export async function stamp(core: MirrorCore, leg: Leg, epoch: number): Promise<void> {
  try {
    await core.gen.stamp(leg);
  } catch (error) {
    core.fail(leg, epoch, `metadata update failed: ${describe(error)}`);
  }
}

/** Its data is no longer trusted: clear its member flag, then judge it (a full resync). */
async function forgetMedia(core: MirrorCore, leg: Leg, epoch: number): Promise<void> {
  // What was sent to it before lands first (a late stamp would set the flag again).
  await leg.flight.settled(core.clock, core.timeoutMs);
  if (leg.epoch !== epoch || core.closed) return;
  if (leg.media !== undefined) {
    const known = await core.timed(leg, leg.media.updateMedia({ flags: 0 })).catch(() => undefined);
    if (known !== undefined && leg.epoch === epoch) leg.known = known;
  }
  if (leg.epoch === epoch && !core.closed) await judge(core, leg, epoch);
}
