/**
 * Facts about the running process for status and /metrics: the version of dst and of Deno, when
 * it started, its memory, CPU time and open files (the Prometheus `process_*` metrics other
 * exporters give). What cannot be read on this system (no /proc) is left out, not guessed.
 */
import process from "node:process";
import config from "../deno.json" with { type: "json" };

/** dst's version, from deno.json. */
export const DST_VERSION: string = config.version;

export interface ProcessInfo {
  readonly version: string;
  readonly deno: string;
  /** Seconds since the epoch when the process started. */
  readonly startTimeSeconds: number;
  readonly uptimeSeconds: number;
  readonly residentBytes: number;
  /** User and system CPU time used so far. */
  readonly cpuSeconds: number;
  readonly openFds?: number;
  readonly maxFds?: number;
}

/** A fresh reading (a few small reads of /proc where there is one). */
export function processInfo(): ProcessInfo {
  const cpu = process.cpuUsage();
  const openFds = countOpenFds();
  const maxFds = softFdLimit();
  return {
    version: DST_VERSION,
    deno: Deno.version.deno,
    startTimeSeconds: Math.round(performance.timeOrigin) / 1000,
    uptimeSeconds: Math.round(performance.now()) / 1000,
    residentBytes: Deno.memoryUsage().rss,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    ...(openFds === undefined ? {} : { openFds }),
    ...(maxFds === undefined ? {} : { maxFds }),
  };
}

function countOpenFds(): number | undefined {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n;
  } catch {
    return undefined;
  }
}

function softFdLimit(): number | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
      .find((l) => l.startsWith("Max open files"));
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    const n = Number(soft);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
