/**
 * A tiny structured logger passed in where something must be said (a link closed, a peer
 * refused), so tests can capture what was logged and production writes one line per event:
 * text with a UTC timestamp for people, or one JSON object per line for log collectors.
 */

export type Level = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

export const LEVELS: readonly Level[] = ["debug", "info", "warn", "error"];
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

export interface Logger {
  log(level: Level, message: string, fields?: Record<string, unknown>): void;
}

const order: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** What `--log-level` and `--log-format` (or DST_LOG_LEVEL, DST_LOG_FORMAT) chose. */
export interface LogSettings {
  readonly level: Level;
  readonly format: LogFormat;
}

let settings: LogSettings = { level: "info", format: "text" };

/** Sets how every console logger made from now on writes (the command line decides once). */
export function setLogSettings(next: LogSettings): void {
  settings = next;
}

export function logSettings(): LogSettings {
  return settings;
}

/** A level's name, or an Error saying which names there are. */
export function parseLevel(text: string): Level {
  const level = text.toLowerCase() as Level;
  if (!LEVELS.includes(level)) {
    throw new Error(`"${text}" is not a log level: use one of ${LEVELS.join(", ")}`);
  }
  return level;
}

export function parseFormat(text: string): LogFormat {
  const format = text.toLowerCase() as LogFormat;
  if (!LOG_FORMATS.includes(format)) {
    throw new Error(`"${text}" is not a log format: use text or json`);
  }
  return format;
}

/** A field value as JSON can carry it: errors by their message, bigints as text. */
function plain(value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return value.toString();
  return value;
}

function stringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => plain(v)) ?? String(value);
  } catch {
    return JSON.stringify(String(value));
  }
}

/** One log line in `format` (no newline). */
export function formatLine(
  format: LogFormat,
  time: Date,
  source: string,
  level: Level,
  message: string,
  fields: Record<string, unknown> = {},
): string {
  if (format === "json") {
    const record: Record<string, unknown> = {
      time: time.toISOString(),
      level,
      source,
      msg: message,
    };
    // A field never hides the record's own keys: it moves aside instead.
    for (const [k, v] of Object.entries(fields)) record[k in record ? `${k}_` : k] = v;
    return stringify(record);
  }
  const extra = Object.entries(fields).map(([k, v]) => ` ${k}=${stringify(v)}`).join("");
  return `${time.toISOString()} ${source} ${level} ${message}${extra}`;
}

/**
 * Writes lines to stderr at or above `min` (default: the level the command line set), in the
 * format the command line set. `source` names the process: "dst serve", "dst node".
 */
export function consoleLogger(min?: Level, source = "dst"): Logger {
  return {
    log(level, message, fields) {
      const { level: chosen, format } = settings;
      if (order[level] < order[min ?? chosen]) return;
      console.error(formatLine(format, new Date(), source, level, message, fields));
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
