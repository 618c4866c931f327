/**
 * A tiny structured logger passed in where something must be said (a link closed, a peer
 * refused), so tests can capture what was logged and production writes one line per event.
 */

export type Level = "debug" | "info" | "warn" | "error";

export interface Logger {
  log(level: Level, message: string, fields?: Record<string, unknown>): void;
}

const order: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Writes `level message key=value ...` lines to stderr at or above `min`. */
export function consoleLogger(min: Level = "info", prefix = "dst"): Logger {
  return {
    log(level, message, fields) {
      if (order[level] < order[min]) return;
      const extra = fields
        ? Object.entries(fields).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join("")
        : "";
      console.error(`${prefix} ${level} ${message}${extra}`);
    },
  };
}

/** Keeps every entry in memory; for tests that assert on what was logged. */
export class MemoryLogger implements Logger {
  readonly entries: { level: Level; message: string; fields: Record<string, unknown> }[] = [];

  log(level: Level, message: string, fields: Record<string, unknown> = {}): void {
    this.entries.push({ level, message, fields });
  }

  /** True when some entry's message contains `text`. */
  has(text: string): boolean {
    return this.entries.some((e) => e.message.includes(text));
  }
}

/** Drops everything. */
export const silentLogger: Logger = { log() {} };
