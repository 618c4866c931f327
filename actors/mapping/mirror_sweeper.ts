/**
 * The mirror's periodic housekeeping: clears activity-log bits of chunks left idle, settles the
 * bitmap generation once every leg is in sync, and tries the legs that are out again. One timer,
 * rescheduled after each sweep, stopped when the mirror closes.
 */
import type { Clock, Timer } from "../../util/clock.ts";
import type { MirrorGenerations } from "./mirror_generations.ts";
import type { Leg } from "./mirror_leg.ts";
import type { WriteIntentBitmap } from "./write_intent_bitmap.ts";

/** What the sweep needs of the mirror. */
export interface SweepHost {
  readonly legs: readonly Leg[];
  readonly bitmap: WriteIntentBitmap;
  readonly gen: MirrorGenerations;
  readonly clock: Clock;
  readonly closed: boolean;
  /** Judges a leg that is out (decision table) and starts its resync. */
  judge(leg: Leg): Promise<void>;
}

export class MirrorSweeper {
  readonly #host: SweepHost;
  readonly #idleMs: number;
  readonly #probeMs: number;
  #timer: Timer | undefined;
  #lastProbe = 0;

  /** `idleMs`: an idle chunk's bit is cleared after this long; `probeMs`: 0 never probes. */
  constructor(host: SweepHost, idleMs: number, probeMs: number) {
    this.#host = host;
    this.#idleMs = idleMs;
    this.#probeMs = probeMs;
  }

  start(): void {
    if (this.#timer !== undefined || this.#host.closed) return;
    const period = Math.max(100, Math.min(this.#idleMs, this.#probeMs || this.#idleMs));
    const tick = () => {
      if (this.#host.closed) return;
      this.sweep();
      this.#timer = this.#host.clock.setTimeout(tick, period);
    };
    this.#timer = this.#host.clock.setTimeout(tick, period);
  }

  stop(): void {
    this.#timer?.cancel();
  }

  /** Clears idle activity-log bits, settles generations, tries legs that are out. */
  sweep(): void {
    const host = this.#host;
    const now = host.clock.now();
    let changed = false;
    // While the bitmap tracks from an older generation, a leg still at that generation (one
    // this mirror may not even know of) needs every chunk written since: bits stay set.
    if (host.gen.settled()) {
      changed = host.bitmap.dropIdle(now, this.#idleMs);
    }
    if (changed) void host.bitmap.store().catch(() => {});
    host.gen.settleIfDue(host.legs.every((l) => l.state === "in-sync"));
    if (this.#probeMs > 0 && now - this.#lastProbe >= this.#probeMs) {
      this.#lastProbe = now;
      for (const l of host.legs) {
        if (l.state === "out" && l.media !== undefined) void host.judge(l);
      }
    }
  }
}
