/**
 * A mirror's start: reads every leg's media, picks the reference legs (consistent members not
 * behind any other, agreeing on one generation), refuses a split brain or legs that hold only an
 * interrupted resync, and judges every other leg against the reference before the mirror
 * serves. The mirror's internals it needs come through `StartHost`.
 */
import { BlockError } from "../block/contract.ts";
import { newGenerationId, newStorageId, NO_GENERATION } from "../block/media.ts";
import { decide, isInconsistent, isMember } from "./generations.ts";
import { judgeLeg, type LegJudgeHost, loadBits } from "./leg_judge.ts";
import { describe } from "../mapping/mirror_errors.ts";
import type { Leg } from "../mapping/mirror_leg.ts";

/** What the start needs of the mirror, beyond what judging a leg needs. */
export interface StartHost extends LegJudgeHost {
  /** Set once some leg keeps media state: the mirror then persists its bitmap and generations. */
  persist: boolean;
  fail(leg: Leg, why: string): void;
  /** Starts the periodic sweep (idle activity-log bits, settling, probing legs that are out). */
  startSweeper(): void;
}

/**
 * Reads every leg's media, runs the decision table and starts what it calls for (resyncs,
 * refusals), before the mirror serves. Without media the mirror keeps no state (all in sync).
 */
export async function judgeAtStart(host: StartHost): Promise<void> {
  let withMedia = host.legs.filter((l) => l.media !== undefined);
  if (withMedia.length === 0) return;
  await Promise.all(withMedia.map(async (l) => {
    try {
      l.known = await l.media!.media();
    } catch (error) {
      if (error instanceof BlockError && error.code === "ENOTSUP") l.media = undefined;
      else host.fail(l, `media state unreadable: ${describe(error)}`);
    }
  }));
  withMedia = withMedia.filter((l) => l.media !== undefined);
  if (withMedia.length === 0) return;
  host.persist = true;
  const members = withMedia.filter((l) =>
    l.state === "in-sync" && isMember(l.known, host.gen.storageId)
  );
  host.gen.storageId ??= members[0]?.known?.storageId ??
    withMedia.find((l) => l.known?.storageId)?.known?.storageId ?? newStorageId();
  // Reference: the consistent members not behind any other; they must agree on one
  // generation. A leg whose resync was interrupted is never a reference: it is judged.
  const consistent = members.filter((l) => !isInconsistent(l.known));
  const behind = (l: Leg) =>
    consistent.some((o) => {
      const kind = decide(o.known!.generations, l.known!.generations).kind;
      return kind === "bitmap" || kind === "full";
    });
  const heads = consistent.filter((l) => !behind(l));
  const headGens = new Set(heads.map((l) => l.known!.generations.current));
  if (headGens.size > 1) {
    const why = `split brain: legs ${
      heads.map((l) => `${l.name} (generation ${l.known!.generations.current})`).join(", ")
    } were each written apart from the others; nothing is served or overwritten until one side is marked dirty (or clean)`;
    for (const l of heads) host.setState(l, "split-brain", why);
    for (const l of host.legs) {
      if (l.state === "in-sync") {
        host.setState(l, "out", "waiting for the split brain to be resolved");
      }
    }
    host.logger.log("error", "mirror refuses to serve: split brain", {
      legs: heads.map((l) => l.name),
    });
    host.startSweeper();
    return;
  }
  let reference = heads;
  if (reference.length === 0 && members.length > 0) {
    // Only legs a resync was still filling are here: their data is good only in part.
    const why = `refused: ${
      members.map((l) => l.name).join(", ")
    } hold(s) an interrupted resync and no consistent leg is reachable to finish it; start the mirror with a consistent leg (or mark one clean to accept its data as it is)`;
    for (const l of host.legs) {
      if (l.state === "in-sync") host.setState(l, "out", why);
    }
    host.logger.log("error", "mirror refuses to serve: only inconsistent legs", {
      legs: members.map((l) => l.name),
    });
    host.startSweeper();
    return;
  }
  if (reference.length === 0) {
    // A new storage: nothing is a member yet; the first reachable leg's data is the truth.
    const first = withMedia.find((l) => l.state === "in-sync");
    if (first === undefined) throw new BlockError("EIO", "no leg of the mirror is reachable");
    reference = [first];
    first.adopt = true;
  }
  const refGens = reference[0]!.known?.generations;
  host.gen.current = refGens !== undefined && refGens.current !== NO_GENERATION
    ? refGens
    : { current: newGenerationId(), bitmap: NO_GENERATION, history: [] };
  // Union of every reachable member's stored bitmap: chunks that may differ (misses, and the
  // activity log: chunks with writes in flight when the mirror last stopped).
  for (const l of withMedia) {
    if (l.state !== "in-sync") continue;
    const stored = await loadBits(host, l);
    if (stored !== undefined) host.bitmap.bits.or(stored);
  }
  // Legs that agree on the generation may still differ where writes were cut short. Their
  // needs are set before anything else can settle (and clear) a bit of the union.
  const reconciling = reference.length > 1 && !host.bitmap.bits.isEmpty() ? reference.slice(1) : [];
  for (const l of reconciling) {
    l.need = host.bitmap.bits.copy();
    host.setState(l, "rebuilding", "reconciling chunks written when the mirror stopped");
  }
  const judged = host.legs.filter((l) => !reference.includes(l));
  for (const l of judged) {
    if (l.state !== "in-sync") continue;
    l.state = "out";
    await judgeLeg(host, l, true);
  }
  for (const l of reconciling) void host.resync(l);
  // A new session: the first write takes a new current generation, as any leg this mirror
  // does not know of (another topology's run, a leg absent now) must see these writes as
  // made apart from it. Two runs that each wrote without the other are a split brain.
  host.gen.mustRotate = true;
  await host.gen.stampReference();
  host.startSweeper();
}
