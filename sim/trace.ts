/**
 * The history of one seed: every event (workload operations, faults, leg moves, what the
 * processes log) goes into a running SHA-256, so two runs of a seed can be compared by one
 * digest, and the last events are kept for the report of a failing seed.
 */
import { createHash, type Hash } from "node:crypto";
import type { Level, Logger } from "../util/log.ts";

/** Events kept for a failure report. */
const KEEP = 400;

export class Trace {
  readonly #hash: Hash = createHash("sha256");
  readonly #last: string[] = [];
  #at = 0;
  count = 0;

  constructor(readonly now: () => number, readonly verbose = false) {}

  event(line: string): void {
    const text = `${this.now().toFixed(3)} ${line}`;
    this.#hash.update(text);
    this.#hash.update("\n");
    this.count++;
    if (this.#last.length < KEEP) this.#last.push(text);
    else this.#last[this.#at] = text;
    this.#at = (this.#at + 1) % KEEP;
    if (this.verbose) console.log(text);
  }

  /** The last events, oldest first. */
  tail(n = KEEP): string[] {
    const ordered = this.#last.length < KEEP
      ? this.#last
      : [...this.#last.slice(this.#at), ...this.#last.slice(0, this.#at)];
    return ordered.slice(-n);
  }

  /** Hex digest of every event so far (the trace goes on). */
  digest(): string {
    return this.#hash.copy().digest("hex");
  }

  /** A logger that writes a process's log lines (info and up) into the trace. */
  logger(process: string): Logger {
    return {
      log: (level: Level, message: string, fields?: Record<string, unknown>) => {
        if (level === "debug") return;
        this.event(`${process} ${level} ${message}${fields ? " " + JSON.stringify(fields) : ""}`);
      },
    };
  }
}
