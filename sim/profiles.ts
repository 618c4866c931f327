/**
 * Per-seed draws of how the simulated parts behave (swarm testing: each seed its own mix):
 * disks (I/O mode, latency, what survives a crash) and the exporters' link and proxy timing.
 */
import type { DiskProfile } from "./disk.ts";
import type { Rng } from "./rng.ts";

export function drawDiskProfile(rng: Rng): DiskProfile {
  const slow = rng.chance(0.5);
  return {
    io: rng.chance(0.5) ? "sync" : "threaded",
    latencyMs: slow ? rng.range(0.01, 2) : 0,
    jitterMs: slow ? rng.range(0, 3) : 0,
    keep: rng.pick([0, 0.3, 0.7, 1]),
    tear: rng.chance(0.7),
  };
}

/** How an exporter's proxies and links are tuned. */
export interface ExporterTuning {
  /** A proxy request not answered in this time fails (ETIMEDOUT). */
  readonly requestTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly deadAfterMs: number;
  readonly backoffMaxMs: number;
  /**
   * How long a mirror leg's proxy holds requests across a lost link (its `ioTimeoutMs`): 0
   * fails them at once (the default wiring); more is what a topology's `ioTimeout` on a remote
   * leaf under a mirror sets, and then the proxy resends them after the reconnect.
   */
  readonly legIoTimeoutMs: number;
}

export function drawExporterTuning(rng: Rng): ExporterTuning {
  const keepAliveMs = rng.pick([250, 500, 1000]);
  return {
    requestTimeoutMs: rng.pick([3000, 10_000, 30_000]),
    connectTimeoutMs: rng.pick([1000, 3000]),
    keepAliveMs,
    deadAfterMs: keepAliveMs * rng.int(3, 6),
    backoffMaxMs: rng.pick([500, 2000]),
    // Drawn last, so the draws before it stay what they were for every seed.
    legIoTimeoutMs: rng.chance(0.5) ? 0 : rng.pick([500, 2000, 5000]),
  };
}
