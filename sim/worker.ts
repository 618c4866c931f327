/**
 * A worker thread that runs the seeds it is given, one at a time, and posts each result back:
 * `deno task sim` spreads seeds over the machine's cores this way. Every seed is independent,
 * so which worker runs it does not change its history.
 */
/// <reference lib="deno.worker" />
import { runSeed, type SeedOptions } from "./run.ts";

self.onmessage = async (event: MessageEvent<{ seed: number; options: SeedOptions }>) => {
  const { seed, options } = event.data;
  self.postMessage(await runSeed(seed, options));
};
