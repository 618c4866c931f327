/**
 * A mirror's start: reads every leg's media, picks the reference legs (consistent members not
 * behind any other, agreeing on one generation), refuses a split brain or legs that hold only an
 * interrupted resync, and judges every other leg against the reference before the mirror
 * serves. A leg that cannot be reached is left behind only when a reference leg recorded it as
 * outdated when it left (DRBD's "outdate peer"); otherwise the start is refused unless forced.
 */
import { BlockError } from "../block/contract.ts";
import { newGenerationId, newStorageId, NO_GENERATION } from "../block/media.ts";
import { ChunkBits } from "./chunk_bits.ts";
import type { MirrorCore } from "./core.ts";
import { describe } from "./errors.ts";
import { decide, isBlank, isInconsistent, isMember, legId, stoppedCleanly } from "./generations.ts";
import { decideVerdict, loadBits, unfit } from "./judge.ts";
import type { Leg } from "./leg.ts";
import type { Verdict } from "./leg_machine.ts";

/** The mirror cannot start as asked; the message says why and what `--force` would risk. */
export class StartRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StartRefused";
  }
}

/**
 * Judges every leg before the mirror serves. Without media the mirror keeps no state: every leg
 * is in sync as it is.
 */
export async function startMirror(core: MirrorCore): Promise<void> {
  const unreachable = new Map<Leg, string>();
  await Promise.all(core.legs.map(async (l) => {
    if (l.media === undefined) return;
    try {
      l.known = await core.timed(l, l.media.media());
    } catch (error) {
      if (error instanceof BlockError && error.code === "ENOTSUP") {
        l.media = undefined;
      } else unreachable.set(l, `unreachable at start: ${describe(error)}`);
    }
  }));
  const withMedia = core.legs.filter((l) => l.media !== undefined && !unreachable.has(l));
  if (withMedia.length === 0 && unreachable.size === 0) {
    for (const l of core.legs) l.need = new ChunkBits(core.chunks);
    for (const l of core.legs) judged(core, l, { kind: "reference" });
    return;
  }
  core.persist = true;
  for (const l of withMedia) {
    const problem = unfit(core.legNeeds(), l.device.info(), core.chunks, l.known);
    if (problem !== undefined) {
      throw new StartRefused(`mirror leg ${l.name} cannot serve this mirror: ${problem}`);
    }
  }
  const members = withMedia.filter((l) => isMember(l.known, core.gen.storageId));
  core.gen.storageId ??= members[0]?.known?.storageId ??
    withMedia.find((l) => l.known?.storageId)?.known?.storageId ?? newStorageId(core.random);
  // Reference: the consistent members not behind any other; they must agree on one
  // generation. A leg whose resync was interrupted is never a reference: it is judged.
  const consistent = members.filter((l) => !isInconsistent(l.known));
  const behind = (l: Leg) =>
    consistent.some((o) => {
      const kind = decide(o.known!.generations, l.known!.generations).kind;
      return kind === "bitmap" || kind === "full";
    });
  const heads = consistent.filter((l) => !behind(l));
  const others = (set: readonly Leg[]) => core.legs.filter((l) => !set.includes(l));
  if (new Set(heads.map((l) => l.known!.generations.current)).size > 1) {
    const why = `split brain: legs ${
      heads.map((l) => `${l.name} (generation ${l.known!.generations.current})`).join(", ")
    } were each written apart from the others; nothing is served or overwritten until the ` +
      "leg whose data to keep is marked clean (with --force)";
    for (const l of core.legs) {
      trackAll(core, l);
    }
    for (const l of heads) {
      judged(core, l, { kind: "refuse", why });
    }
    for (const l of others(heads)) {
      judged(core, l, { kind: "out", why: "waiting for the split brain to be resolved" });
    }
    core.logger.log("error", "mirror refuses to serve: split brain", {
      legs: heads.map((l) =>
        l.name
      ),
    });
    return;
  }
  let reference = heads;
  if (reference.length === 0 && members.length > 0 && unreachable.size > 0 && !core.force) {
    // Only legs a resync was still filling answer; a leg that cannot be reached may be the
    // consistent one. Refused, so the start is tried again (dst start, systemd, a supervisor)
    // and finds it once it is back: a mirror that stayed up here would wait for good, as no
    // leg serves to judge the returning one against.
    const missing = [...unreachable.keys()].map((l) => l.name).join(", ");
    throw new StartRefused(
      `${members.map((l) => l.name).join(", ")} hold(s) an interrupted resync and ${missing} ` +
        "cannot be reached: bring it back to finish the resync from it, or start with --force " +
        "and mark a leg clean (--force) to accept its data as it is",
    );
  }
  if (reference.length === 0 && members.length > 0) {
    // Only legs a resync was still filling are here: their data is good only in part.
    const why = `refused: ${
      members.map((l) => l.name).join(", ")
    } hold(s) an interrupted resync and no consistent leg is reachable to finish it; start the ` +
      "mirror with a consistent leg (or mark one clean with --force to accept its data as it is)";
    for (const l of core.legs) {
      trackAll(core, l);
    }
    for (const l of core.legs) {
      judged(core, l, { kind: "out", why });
    }
    core.logger.log("error", "mirror refuses to serve: only inconsistent legs", {
      legs: members.map((l) =>
        l.name
      ),
    });
    return;
  }
  if (reference.length === 0) {
    const first = withMedia[0];
    if (first === undefined) throw new StartRefused("no leg of the mirror is reachable");
    if (unreachable.size === 0 && core.legs.every((l) => isBlank(l.known))) {
      // A new storage on blank media (DRBD's "new current UUID, clear bitmap"): every leg reads
      // as zeros, so they are identical already; nothing is copied.
      reference = [...core.legs];
      core.logger.log("info", "new storage on blank legs: in sync without a copy", {
        legs: core.legs.length,
      });
    } else {
      // No leg's media carries the storage's age: a leg that keeps no media (a storage served
      // as a node) may hold its data, media without the age holds none. Else a new storage:
      // the first reachable leg's data is the truth.
      reference = core.layout.everyLegNew
        ? [...withMedia]
        : [core.legs.find((l) => l.media === undefined) ?? first];
    }
    for (const l of reference) l.adopt = true;
  }
  checkUnreachable(core, reference, unreachable);
  const refGens = reference[0]!.known?.generations;
  core.gen.current = refGens !== undefined && refGens.current !== NO_GENERATION
    ? refGens
    : { current: newGenerationId(core.random), bitmap: NO_GENERATION, history: [] };
  // Union of every reachable leg's stored bitmap: chunks that may differ (misses, and the
  // activity log: chunks with writes in flight when the mirror last stopped).
  const union = new ChunkBits(core.chunks);
  for (const l of withMedia) {
    const stored = await loadBits(core, l, l.known!);
    if (stored !== undefined) union.or(stored);
  }
  core.bitmap.setAll(union);
  const listed = new Set(reference.flatMap((l) => l.known?.outdated ?? []));
  for (const l of others([reference[0]!])) {
    // Misses are tracked in the bitmap only for legs the reference recorded as outdated; a
    // leg it did not know of (absent from an earlier run) may lack anything.
    const need = reference.includes(l) || listed.has(legId(l.name))
      ? union.copy()
      : ChunkBits.full(core.chunks);
    l.need = need;
    core.bitmap.setAll(need);
  }
  judged(core, reference[0]!, { kind: "reference" });
  // Legs agreeing on the generation may still differ where writes were cut short, unless the
  // mirror stopped cleanly with each of them in sync.
  const agree = union.isEmpty() || reference.every((l) => stoppedCleanly(l.known));
  if (core.layout.reconcile !== undefined) {
    await core.layout.reconcile(core, reference, union, agree);
  } else {
    for (const l of reference.slice(1)) {
      if (agree) judged(core, l, { kind: "reference" });
      else judged(core, l, { kind: "resync", need: union.copy(), adopt: false });
    }
  }
  for (const l of others(reference)) {
    const why = unreachable.get(l);
    if (why !== undefined) {
      judged(core, l, { kind: "out", why });
    } else if (l.media === undefined || l.known === undefined) {
      // A leg that keeps no media (a storage served as a node) cannot say what it holds: it
      // is copied in full before it is read.
      judged(core, l, decideVerdict(core, l, { kind: "answers" }));
    } else {
      judged(core, l, decideVerdict(core, l, { kind: "media", state: l.known, own: undefined }));
    }
  }
  // A new session: the first write takes a new current generation, as any leg this mirror
  // does not know of (another topology's run, a leg absent now) must see these writes as
  // made apart from it. Two runs that each wrote without the other are a split brain.
  core.gen.mustRotate = true;
  await core.gen.stampReference();
}

/** A leg whose misses nobody tracked: it may lack anything. */
function trackAll(core: MirrorCore, leg: Leg): void {
  leg.need = ChunkBits.full(core.chunks);
  core.bitmap.setAll(leg.need);
}

function judged(core: MirrorCore, leg: Leg, verdict: Verdict): void {
  core.dispatch(leg, { t: "judged", verdict }, leg.epoch);
}

/**
 * Unreachable legs may be left behind only when a reference leg recorded them as outdated when
 * they left: otherwise one of them may hold writes the reference lacks (it may have been the last
 * to serve), and starting without it would serve old data.
 */
function checkUnreachable(
  core: MirrorCore,
  reference: readonly Leg[],
  unreachable: Map<Leg, string>,
) {
  const outdated = new Set(reference.flatMap((l) => l.known?.outdated ?? []));
  const unknown = [...unreachable.keys()].filter((l) => !outdated.has(legId(l.name)));
  if (unknown.length === 0) return;
  const names = unknown.map((l) => l.name).join(", ");
  const risk =
    `${names} cannot be reached and no reachable leg recorded ${
      unknown.length === 1 ? "it" : "them"
    } as outdated: ${unknown.length === 1 ? "it" : "they"} may hold acknowledged writes the ` +
    `reachable legs lack (the last leg to serve before a stop)`;
  if (!core.force) {
    throw new StartRefused(
      `${risk}. Bring ${names} back, or start with --force: writes only ${names} holds are then ` +
        `not served, and when ${
          unknown.length === 1 ? "it returns it is" : "they return they are"
        } ` +
        "refused as split brain if written apart (nothing is overwritten)",
    );
  }
  core.logger.log("warn", "mirror starts without legs that may hold newer writes (forced)", {
    legs: unknown.map((l) => l.name),
  });
}
