/**
 * Seeds the simulator keeps: every seed that found a bug (run by CI, each must pass now), and
 * the seeds that still fail because of a known design gap (not run by CI; sim/gaps.ts says what
 * each gap is). A seed's history depends on the options it ran with, kept beside it.
 */
import type { SeedOptions } from "./run.ts";

export interface KeptSeed {
  readonly seed: number;
  readonly options: SeedOptions;
  /** What it found, and the fix (commit subject). */
  readonly found: string;
}

/** Seeds that found a bug: each failed before its fix, and passes since. */
export const REGRESSIONS: readonly KeptSeed[] = [];

/** Seeds that fail for a known design gap, with what to replay them with. */
export const KNOWN_FAILING: readonly (KeptSeed & { readonly gap: string })[] = [];

/** The fixed range CI runs (seeds in KNOWN_FAILING are skipped), and how long each runs. */
export const CI_FIRST = 1;
export const CI_SEEDS = 520;
export const CI_TICKS = 10_000;
