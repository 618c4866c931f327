/**
 * How a seed's result is told: one line for a passing seed in verbose runs, and for a failure
 * everything needed to replay and understand it: the seed, what failed, the fault schedule, the
 * last events, and the command that replays it.
 */
import type { SeedResult } from "./run.ts";

/** `flags`: what to add to `--seed S` to replay it (`--ticks T`, `--gaps`). */
export function describeFailure(r: SeedResult, flags = ""): string {
  const lines = [
    `seed ${r.seed} FAILED (${r.family}, ${r.nodes} nodes, ${r.levels} levels, ` +
    `trace ${r.digest})`,
    ...r.failures.map((f) => `  failure: ${f}`),
    "  fault schedule:",
    ...(r.schedule ?? []).map((s) => `    ${s}`),
    "  last events:",
    ...(r.tail ?? []).map((t) => `    ${t}`),
    `  replay: deno task sim --seed ${r.seed}${flags}`,
  ];
  return lines.join("\n");
}

export function describePass(r: SeedResult): string {
  return `seed ${r.seed} ok (${r.family}, ${r.nodes} nodes, ${r.ops} ops, ` +
    `${(r.simMs / 1000).toFixed(1)} s simulated, trace ${r.digest})`;
}
