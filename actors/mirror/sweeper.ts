/**
 * The mirror's periodic housekeeping, run on the actor's tick: chunks idle in the activity log
 * leave it once a flush on every leg that takes writes made their writes durable; the bitmap
 * generation settles once every leg is in sync; legs that are out are tried again.
 */
import type { MirrorCore } from "./core.ts";
import { describe } from "./errors.ts";
import { takesWrites } from "./leg.ts";

export class Sweeper {
  readonly #core: MirrorCore;
  #lastProbe = 0;
  #flushing = false;

  constructor(core: MirrorCore) {
    this.#core = core;
  }

  /** How often the actor ticks. */
  get periodMs(): number {
    const c = this.#core;
    return Math.max(100, Math.min(c.idleMs, c.probeMs || c.idleMs));
  }

  sweep(): void {
    const core = this.#core;
    if (core.closed) return;
    const now = core.clock.now();
    // While the bitmap tracks from an older generation, a leg still at that generation (one
    // this mirror may not even know of) needs every chunk written since: bits stay set.
    if (core.persist && core.gen.settled() && !this.#flushing) {
      const idle = core.bitmap.idleSince(now - core.idleMs);
      if (idle.length > 0) {
        this.#flushing = true;
        void this.#retire(idle).finally(() => (this.#flushing = false));
      }
    }
    core.gen.settleIfDue(core.legs.every((l) => l.state === "in-sync"));
    if (core.probeMs > 0 && now - this.#lastProbe >= core.probeMs) {
      this.#lastProbe = now;
      // Legs without media too: nothing else tells when a linear or a storage is back.
      for (const l of core.legs) {
        if (l.state === "out") core.dispatch(l, { t: "reachable" });
      }
    }
  }

  /**
   * Flushes every leg that takes writes, then retires the idle chunks not written since the
   * flush began. A leg that fails the flush leaves, keeping those chunks in its need.
   */
  async #retire(idle: number[]): Promise<void> {
    const core = this.#core;
    const flushedAt = core.clock.now();
    const legs = core.legs.filter(takesWrites);
    const epochs = legs.map((l) => l.epoch);
    const results = await Promise.allSettled(legs.map((l) => core.timed(l, l.device.flush())));
    results.forEach((r, i) => {
      if (r.status === "rejected") {
        core.fail(legs[i]!, epochs[i]!, `flush failed: ${describe(r.reason)}`);
      }
    });
    if (core.closed || !results.some((r) => r.status === "fulfilled")) return;
    if (core.bitmap.retire(idle, flushedAt)) await core.bitmap.store().catch(() => {});
  }
}
