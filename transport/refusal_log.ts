/**
 * Refused connections, logged once per burst: the first refusal for a reason is logged as it
 * happens, repeats are counted and summed up in one line once the burst is over. A flood of
 * bad handshakes (or a server at its limits) then costs a few log lines, not one per connection.
 */

import type { Clock, Timer } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

/** A burst ends after this long without a refusal. */
const QUIET_MS = 5000;
/** Distinct reasons logged one by one per burst; more are only counted. */
const MAX_REASONS = 16;

export class RefusalLog {
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #quietMs: number;
  /** Repeats per reason in this burst (0: logged once, nothing more since). */
  #repeats = new Map<string, number>();
  #others = 0;
  #lastAt = 0;
  #timer: Timer | undefined;

  constructor(logger: Logger, clock: Clock, quietMs = QUIET_MS) {
    this.#logger = logger;
    this.#clock = clock;
    this.#quietMs = quietMs;
  }

  /** One refused connection from `remote`, for `reason`. */
  note(remote: string, reason: string): void {
    this.#lastAt = this.#clock.now();
    const seen = this.#repeats.get(reason);
    if (seen !== undefined) this.#repeats.set(reason, seen + 1);
    else if (this.#repeats.size >= MAX_REASONS) this.#others++;
    else {
      this.#repeats.set(reason, 0);
      this.#logger.log("warn", "link refused", { remote, reason });
    }
    this.#timer ??= this.#clock.setTimeout(() => this.#tick(), this.#quietMs);
  }

  /** Logs what is still counted and stops the timer (the server closes). */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#flush();
  }

  #tick(): void {
    this.#timer = undefined;
    const quietFor = this.#clock.now() - this.#lastAt;
    // Within a millisecond counts as quiet: the clock may land a hair short of the due time
    // (float rounding), and re-arming for that hair fires at once, again and again.
    if (quietFor < this.#quietMs - 1) {
      this.#timer = this.#clock.setTimeout(() => this.#tick(), this.#quietMs - quietFor);
      return;
    }
    this.#flush();
  }

  #flush(): void {
    for (const [reason, count] of this.#repeats) {
      if (count > 0) this.#logger.log("warn", "link refused again", { reason, times: count });
    }
    if (this.#others > 0) {
      this.#logger.log("warn", "link refused for other reasons", { times: this.#others });
    }
    this.#repeats = new Map();
    this.#others = 0;
  }
}
