/**
 * What every `dst` command takes besides its own options: `--log-level` and `--log-format`
 * (defaults from DST_LOG_LEVEL and DST_LOG_FORMAT, so a systemd unit or `dst start`'s children
 * can set them once), and the version `dst --version` prints.
 */
import meta from "../deno.json" with { type: "json" };
import {
  type LogSettings,
  logSettings,
  parseFormat,
  parseLevel,
  setLogSettings,
} from "../util/log.ts";
import { UsageError } from "./command.ts";

/** The `--log-level` and `--log-format` lines of a command's help. */
export const LOG_HELP =
  `  --log-level LEVEL   debug, info (default), warn or error (or DST_LOG_LEVEL)
  --log-format FORMAT text (default: one line per event with a UTC timestamp) or json (one
                      object per line: time, level, source, msg, fields; or DST_LOG_FORMAT)`;

/** `dst 0.1.0 (deno 2.9.6, v8 ..., typescript ...)` */
export function versionText(): string {
  const v = Deno.version;
  return `dst ${meta.version} (deno ${v.deno}, v8 ${v.v8}, typescript ${v.typescript})`;
}

/**
 * Takes `--log-level X` and `--log-format X` (or `=X`) out of `args` and applies them, with the
 * environment's defaults; returns the other arguments in order. Stops looking at `--`.
 */
export function takeLogFlags(
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string[] {
  const wanted: { level?: string; format?: string } = {};
  const from: { level?: string; format?: string } = {};
  const level = env("DST_LOG_LEVEL");
  const format = env("DST_LOG_FORMAT");
  if (level !== undefined && level !== "") [wanted.level, from.level] = [level, "DST_LOG_LEVEL"];
  if (format !== undefined && format !== "") {
    [wanted.format, from.format] = [format, "DST_LOG_FORMAT"];
  }
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      rest.push(...args.slice(i));
      break;
    }
    const match = /^--log-(level|format)(?:=(.*))?$/.exec(arg);
    if (match === null) {
      rest.push(arg);
      continue;
    }
    const key = match[1] as "level" | "format";
    const value = match[2] ?? args[++i];
    if (value === undefined || value === "") throw new UsageError(`--log-${key} needs a value`);
    wanted[key] = value;
    from[key] = `--log-${key}`;
  }
  const current = logSettings();
  const next: LogSettings = {
    level: wanted.level === undefined
      ? current.level
      : parsed(parseLevel, wanted.level, from.level),
    format: wanted.format === undefined
      ? current.format
      : parsed(parseFormat, wanted.format, from.format),
  };
  setLogSettings(next);
  return rest;
}

function parsed<T>(parse: (text: string) => T, text: string, from: string | undefined): T {
  try {
    return parse(text);
  } catch (error) {
    throw new UsageError(`${from}: ${(error as Error).message}`);
  }
}
