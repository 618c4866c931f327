/**
 * Online verify: compares digests of every in-sync leg chunk by chunk, under the range lock so
 * no write is half on some legs. Disagreement is never settled by position: a chunk where a
 * strict majority agrees marks the minority for repair; a chunk with no majority (two legs that
 * differ) is only reported, and repaired only from the leg the operator names (`repairFrom`).
 */
import { ChunkBits } from "./chunk_bits.ts";
import type { MirrorCore } from "./core.ts";
import { ControlRefused } from "./core.ts";
import type { Leg } from "./leg.ts";

/** What a verify found; kept by the mirror for status and metrics. */
export interface VerifyReport {
  /** Clock time it finished (the mirror's clock). */
  readonly at: number;
  readonly legs: readonly string[];
  readonly chunksCompared: number;
  /** Chunks where the legs did not all agree. */
  readonly mismatchedChunks: number;
  readonly mismatchedBytes: number;
  /** Bytes marked for repair on each leg (resynced from the others). */
  readonly repairedBytes: Readonly<Record<string, number>>;
  /** Bytes where no leg could be trusted (no majority and no leg named): reported only. */
  readonly unresolvedBytes: number;
  readonly repairFrom?: string;
}

/** Runs a verify; `repairFrom` names the leg to trust where legs disagree. */
export async function verify(core: MirrorCore, repairFrom?: string): Promise<VerifyReport> {
  const legs = core.legs.filter((l) => l.state === "in-sync" && l.media !== undefined);
  if (legs.length < 2) {
    throw new ControlRefused("verify needs at least two in-sync legs with media");
  }
  let trusted: Leg | undefined;
  if (repairFrom !== undefined) {
    trusted = core.leg(repairFrom);
    if (trusted.state !== "in-sync") {
      throw new ControlRefused(
        `${repairFrom} is ${trusted.state}: repair only from an in-sync leg`,
      );
    }
  }
  const repair = new Map<Leg, ChunkBits>();
  let mismatchedChunks = 0;
  let mismatchedBytes = 0;
  let unresolvedBytes = 0;
  let compared = 0;
  for (let c = 0; c < core.chunks && !core.closed; c++) {
    const offset = c * core.chunkSize;
    const length = Math.min(core.chunkSize, core.size - offset);
    // The legs compared are the ones in sync once the chunk is locked: a leg that left while
    // a write held the lock may lack that write, and is no disagreement.
    let alive: Leg[] = [];
    const digests = await core.lock(offset, length, () => {
      alive = legs.filter((l) => l.state === "in-sync");
      return Promise.all(alive.map((l) => {
        const epoch = l.epoch;
        return core.timed(l, l.media!.digest(offset, length, core.chunkSize)).then(
          hex,
          (error) => {
            core.fail(l, epoch, `verify read failed: ${(error as Error).message}`);
            return undefined;
          },
        );
      }));
    });
    if (alive.length < 2) break;
    compared++;
    const counts = new Map<string, number>();
    for (const d of digests) if (d !== undefined) counts.set(d, (counts.get(d) ?? 0) + 1);
    if (counts.size <= 1) continue;
    mismatchedChunks++;
    mismatchedBytes += length;
    let good: string | undefined;
    if (trusted !== undefined) {
      good = digests[alive.indexOf(trusted)];
    } else {
      const [best, n] = [...counts.entries()].reduce((a, b) => (b[1] > a[1] ? b : a));
      if (n * 2 > digests.filter((d) => d !== undefined).length) good = best;
    }
    if (good === undefined) {
      unresolvedBytes += length;
      continue;
    }
    alive.forEach((l, i) => {
      if (digests[i] === undefined || digests[i] === good) return;
      const bits = repair.get(l) ?? new ChunkBits(core.chunks);
      bits.set(c);
      repair.set(l, bits);
    });
  }
  const repairedBytes: Record<string, number> = {};
  for (const [leg, bits] of repair) {
    const outcome = core.dispatch(leg, {
      t: "mismatch",
      chunks: bits,
      why: `verify found ${bits.count()} chunk(s) differing from ${
        trusted?.name ?? "the majority"
      }`,
    });
    if (outcome.kind === "move") repairedBytes[leg.name] = bits.count() * core.chunkSize;
  }
  const report: VerifyReport = {
    at: core.clock.now(),
    legs: legs.map((l) => l.name),
    chunksCompared: compared,
    mismatchedChunks,
    mismatchedBytes,
    repairedBytes,
    unresolvedBytes,
    ...(repairFrom === undefined ? {} : { repairFrom }),
  };
  core.lastVerify = report;
  core.logger.log(mismatchedChunks > 0 ? "warn" : "info", "mirror verify done", {
    mismatchedChunks,
    unresolvedBytes,
    repaired: Object.keys(repairedBytes).join(",") || "none",
  });
  return report;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
