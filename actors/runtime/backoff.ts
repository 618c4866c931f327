/**
 * Restart pacing for supervisors: jittered exponential delays between restarts, and the OTP
 * restart intensity (at most `intensity` restarts within `periodMs`) past which a supervisor
 * gives up and fails upward. Pure functions of the injected clock and random source.
 */
import type { Random } from "../../util/random.ts";

export interface BackoffOptions {
  /** Delay before the first restart in a period. Default 10 ms. */
  readonly initialMs?: number;
  /** Cap on the delay. Default 5000 ms. */
  readonly maxMs?: number;
  /** Growth per consecutive restart. Default 2. */
  readonly factor?: number;
  /** Spread as a fraction of the delay, drawn uniformly from ±jitter. Default 0.2. */
  readonly jitter?: number;
}

/** The delay before restart number `attempt` (1 = first) of a run of restarts. */
export function backoffDelay(attempt: number, options: BackoffOptions, random: Random): number {
  const initial = options.initialMs ?? 10;
  const max = options.maxMs ?? 5000;
  const factor = options.factor ?? 2;
  const jitter = options.jitter ?? 0.2;
  const base = Math.min(max, initial * factor ** Math.max(0, attempt - 1));
  return Math.max(0, Math.round(base * (1 - jitter + 2 * jitter * random.next())));
}

/** Timestamps of recent restarts, forgotten once older than the period. */
export class RestartWindow {
  readonly #times: number[] = [];

  constructor(readonly intensity: number, readonly periodMs: number) {
    if (!(intensity >= 0) || !(periodMs > 0)) {
      throw new RangeError(`restart intensity must be >= 0 and period > 0 ms`);
    }
  }

  /** Restarts within the period ending at `now`. */
  count(now: number): number {
    while (this.#times.length > 0 && this.#times[0]! <= now - this.periodMs) this.#times.shift();
    return this.#times.length;
  }

  /** Records a restart at `now`; false when it exceeds the allowed intensity. */
  record(now: number): boolean {
    this.count(now);
    this.#times.push(now);
    return this.#times.length <= this.intensity;
  }
}
