/**
 * CI of the whole-system simulation: a fixed range of seeds and every seed that ever found a
 * bug must pass; the checker must catch a deliberately broken mirror (broken here only, by
 * patching the real one in this test process) within a bounded number of seeds; and one seed
 * must replay with the same trace digest.
 */
import assert from "node:assert/strict";
import { MirrorCore } from "../actors/mirror/core.ts";
import { WriteIntentBitmap } from "../actors/mirror/write_intent_bitmap.ts";
import { runSeeds } from "./main.ts";
import {
  CI_FIRST,
  CI_SEEDS,
  CI_TICKS,
  KNOWN_FAILING,
  PARITY_FIRST,
  PARITY_SEEDS,
  REGRESSIONS,
} from "./regressions.ts";
import { describeFailure } from "./report.ts";
import { runSeed, type SeedOptions, type SeedResult } from "./run.ts";

const JOBS = Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1));

function failures(results: readonly SeedResult[], flags: string): string {
  return results.filter((r) => !r.ok).map((r) => describeFailure(r, flags)).join("\n\n");
}

Deno.test("sim: a fixed range of seeds and every regression seed pass", async () => {
  const skip = new Set(
    KNOWN_FAILING.filter((k) =>
      k.options.gaps !== true && k.options.parity !== true && k.options.ticks === CI_TICKS &&
      k.options.legIoTimeoutMs === undefined
    ).map((k) => k.seed),
  );
  const seeds = Array.from({ length: CI_SEEDS }, (_, i) => CI_FIRST + i).filter((s) =>
    !skip.has(s)
  );
  assert.ok(seeds.length >= 500, `CI runs at least 500 seeds, not ${seeds.length}`);
  const ranged = await runSeeds(seeds, { ticks: CI_TICKS }, JOBS, () => {});
  assert.equal(ranged.length, seeds.length);
  assert.equal(failures(ranged, ` --ticks ${CI_TICKS}`), "");
  // Regression seeds, grouped by the options they ran with.
  const groups = new Map<string, { options: SeedOptions; seeds: number[] }>();
  for (const r of REGRESSIONS) {
    const key = JSON.stringify(r.options);
    const g = groups.get(key) ?? { options: r.options, seeds: [] };
    g.seeds.push(r.seed);
    groups.set(key, g);
  }
  for (const { options, seeds } of groups.values()) {
    const results = await runSeeds(seeds, options, JOBS, () => {});
    const flags = `${options.ticks === undefined ? "" : ` --ticks ${options.ticks}`}` +
      `${options.gaps ? " --gaps" : ""}` +
      `${
        options.legIoTimeoutMs === undefined ? "" : ` --leg-io-timeout ${options.legIoTimeoutMs}`
      }` +
      `${
        options.rotationHeadroom === undefined
          ? ""
          : ` --rotation-headroom ${options.rotationHeadroom}`
      }`;
    assert.equal(failures(results, flags), "");
  }
});

Deno.test("sim: parity shapes converge, every read judged and every stripe adding up", async () => {
  const skip = new Set(KNOWN_FAILING.filter((k) => k.options.parity === true).map((k) => k.seed));
  const seeds = Array.from({ length: PARITY_SEEDS }, (_, i) => PARITY_FIRST + i).filter((s) =>
    !skip.has(s)
  );
  const results = await runSeeds(
    seeds,
    { ticks: CI_TICKS, parity: true, legIoTimeoutMs: 0 },
    JOBS,
    () => {},
  );
  assert.equal(results.length, seeds.length);
  assert.equal(failures(results, ` --ticks ${CI_TICKS} --parity --leg-io-timeout 0`), "");
});

/** Runs seeds from `first` in this process until one fails; the seed that failed. */
async function firstFailure(first: number, bound: number): Promise<SeedResult | undefined> {
  for (let seed = first; seed < first + bound; seed++) {
    const result = await runSeed(seed, { ticks: 5_000 });
    if (!result.ok) return result;
  }
  return undefined;
}

Deno.test("sim: the checker catches a mirror that acknowledges writes before its legs have them", async () => {
  const write = MirrorCore.prototype.write;
  MirrorCore.prototype.write = function (offset: number, data: Uint8Array, fua: boolean) {
    void write.call(this, offset, data, fua).catch(() => {});
    return Promise.resolve();
  };
  try {
    const caught = await firstFailure(1, 20);
    assert.ok(caught !== undefined, "no seed of 20 caught the broken mirror");
    assert.match(caught.failures.join("\n"), /returned write|differ|expected/);
  } finally {
    MirrorCore.prototype.write = write;
  }
});

Deno.test("sim: the checker catches a bitmap that clears a bit while a leg still lacks its chunk", async () => {
  const wanted = WriteIntentBitmap.prototype.wanted;
  // Broken: a bit is wanted only while writes to its chunk are in flight, not while a leg
  // that missed them still lacks the chunk.
  WriteIntentBitmap.prototype.wanted = function (this: WriteIntentBitmap, c: number) {
    return this.activeChunks().includes(c);
  };
  try {
    const caught = await firstFailure(1, 60);
    assert.ok(caught !== undefined, "no seed of 60 caught the broken bitmap");
    // The mirror's own invariant (a leg lacks a chunk the bitmap does not mark) fires first.
    assert.match(caught.failures.join("\n"), /bitmap does not mark|returned write|differ/);
  } finally {
    WriteIntentBitmap.prototype.wanted = wanted;
  }
});

Deno.test("sim: a seed replays byte for byte (the same trace digest twice, in a worker too)", async () => {
  const seed = 8; // a tree of 40 nodes in 3 levels
  const a = await runSeed(seed, { ticks: 5_000 });
  const b = await runSeed(seed, { ticks: 5_000 });
  assert.equal(a.family, "deep");
  assert.ok(a.events > 1000, `a trace of ${a.events} events says little`);
  assert.equal(a.digest, b.digest);
  const [c] = await runSeeds([seed], { ticks: 5_000 }, 1, () => {});
  assert.equal(c!.digest, a.digest);
});
