/**
 * `deno task sim`: runs seeds of the whole-system simulation and reports.
 *
 *   deno task sim [--seeds N] [--first F] [--seed S] [--ticks T] [--jobs J] [--verbose]
 *
 * `--gaps` also injects the faults that trip the known design gaps (sim/gaps.ts).
 * `--leg-io-timeout MS` forces mirror legs' proxy I/O timeout instead of each seed's draw (0
 * replays a seed kept from before that was drawn); `--rotation-headroom N` holds faults back
 * once a leg is out for N rotations (default 2; 0 lifts that, see sim/gaps.ts); `--parity` makes every
 * seed a parity (RAID 5) shape.
 * `--seeds N` runs seeds F..F+N-1 (F defaults to 1) spread over J worker threads (default: the
 * cores); `--seed S` replays one seed in this thread and prints its trace digest (`--verbose`:
 * every event). Exit status 1 when a seed failed.
 */
import { parseArgs } from "node:util";
import { describeFailure, describePass } from "./report.ts";
import { DEFAULT_TICKS, runSeed, type SeedOptions, type SeedResult } from "./run.ts";

const USAGE = "usage: deno task sim [--seeds N] [--first F] [--seed S] [--ticks T] " +
  "[--jobs J] [--gaps] [--parity] [--leg-io-timeout MS] [--rotation-headroom N] [--verbose]";

function positive(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new Error(`${flag} must be a whole number, got "${value}"\n${USAGE}`);
  }
  return n;
}

/** Runs `seeds` over `jobs` workers; calls `each` with every result as it comes. */
export async function runSeeds(
  seeds: readonly number[],
  options: SeedOptions,
  jobs: number,
  each: (r: SeedResult) => void,
): Promise<SeedResult[]> {
  const results: SeedResult[] = [];
  let next = 0;
  const worker = async () => {
    const w = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    try {
      while (next < seeds.length) {
        const seed = seeds[next++]!;
        const result = await new Promise<SeedResult>((resolve, reject) => {
          w.onmessage = (e: MessageEvent<SeedResult>) => resolve(e.data);
          w.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`worker failed on seed ${seed}: ${e.message}`));
          };
          w.postMessage({ seed, options });
        });
        results.push(result);
        each(result);
      }
    } finally {
      w.terminate();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, seeds.length)) }, worker));
  return results.sort((a, b) => a.seed - b.seed);
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      seeds: { type: "string" },
      first: { type: "string" },
      seed: { type: "string" },
      ticks: { type: "string" },
      jobs: { type: "string" },
      verbose: { type: "boolean", short: "v" },
      gaps: { type: "boolean" },
      "leg-io-timeout": { type: "string" },
      "rotation-headroom": { type: "string" },
      parity: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const ticks = positive(values.ticks, "--ticks", DEFAULT_TICKS);
  const legIo = values["leg-io-timeout"];
  const headroom = values["rotation-headroom"];
  const options: SeedOptions = {
    ticks,
    gaps: values.gaps ?? false,
    parity: values.parity ?? false,
    ...(legIo === undefined ? {} : { legIoTimeoutMs: positive(legIo, "--leg-io-timeout", 0) }),
    ...(headroom === undefined
      ? {}
      : { rotationHeadroom: positive(headroom, "--rotation-headroom", 2) || Infinity }),
  };
  const replayFlags = (values.ticks === undefined ? "" : ` --ticks ${ticks}`) +
    (values.gaps ? " --gaps" : "") + (values.parity ? " --parity" : "") +
    (legIo === undefined ? "" : ` --leg-io-timeout ${legIo}`) +
    (headroom === undefined ? "" : ` --rotation-headroom ${headroom}`);
  if (values.seed !== undefined) {
    const seed = positive(values.seed, "--seed", 1);
    const result = await runSeed(seed, { ...options, verbose: values.verbose ?? false });
    console.log(
      result.ok ? describePass(result) : describeFailure(result, replayFlags),
    );
    return result.ok ? 0 : 1;
  }
  const count = positive(values.seeds, "--seeds", 100);
  const first = positive(values.first, "--first", 1);
  const jobs = positive(values.jobs, "--jobs", navigator.hardwareConcurrency || 1);
  const seeds = Array.from({ length: count }, (_, i) => first + i);
  const started = performance.now();
  let done = 0;
  const failed: SeedResult[] = [];
  await runSeeds(seeds, options, jobs, (r) => {
    done++;
    if (!r.ok) {
      failed.push(r);
      console.log(describeFailure(r, replayFlags));
    } else if (values.verbose) console.log(describePass(r));
    if (done % 500 === 0) console.error(`${done}/${count} seeds, ${failed.length} failed`);
  }).then((results) => {
    const wall = (performance.now() - started) / 1000;
    const simHours = results.reduce((n, r) => n + r.simMs, 0) / 3_600_000;
    const families = new Map<string, number>();
    for (const r of results) families.set(r.family, (families.get(r.family) ?? 0) + 1);
    const big = results.filter((r) => r.nodes >= 30 && r.levels >= 3).length;
    console.log(
      `${results.length} seeds (${first}..${first + count - 1}), ${failed.length} failed` +
        (failed.length > 0 ? `: ${failed.map((r) => r.seed).join(" ")}` : "") +
        `\nwall ${wall.toFixed(1)} s, ${(results.length / wall).toFixed(2)} seeds/s, ` +
        `${(simHours * 3600 / wall).toFixed(1)} simulated s per wall s ` +
        `(${(simHours / wall).toFixed(3)} simulated h per wall s), ${jobs} jobs\n` +
        `families: ${[...families].map(([f, n]) => `${f} ${n}`).join(", ")}; ` +
        `${big} trees of 30+ nodes in 3+ levels; ` +
        `${results.reduce((n, r) => n + r.ops, 0)} client operations`,
    );
  });
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (e) {
    // A bad flag (or anything else before the seeds run): one clear line and the usage.
    const message = e instanceof Error ? e.message : String(e);
    console.error(`sim: ${message}${message.includes("usage:") ? "" : `\n${USAGE}`}`);
    Deno.exit(2);
  }
}
