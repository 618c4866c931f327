/**
 * Command-line flags for every `dst` subcommand: strict, mistakes are UsageErrors that say in one
 * line what was wrong ("unknown option --lisen (did you mean --listen?)") instead of node's
 * parseArgs wording, and never bury it under the whole help.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { UsageError } from "./command.ts";

/** Parses `args` against `options`; an unknown or malformed flag throws UsageError (exit 2). */
export function parseFlags<const O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(flagProblem(error, options));
  }
}

/** Like {@link parseFlags}, for commands that also take positional arguments. */
export function parseFlagsAndArgs<const O extends ParseArgsOptionsConfig>(
  args: string[],
  options: O,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: true });
  } catch (error) {
    throw new UsageError(flagProblem(error, options));
  }
}

/** What node's parseArgs complained about, said plainly, with the nearest known option. */
export function flagProblem(error: unknown, options: ParseArgsOptionsConfig): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && unknown !== null) {
    const given = unknown[1]!;
    const near = nearestOption(given, options);
    return `unknown option ${given}${near === undefined ? "" : ` (did you mean ${near}?)`}`;
  }
  const missing = /^Option '(-\S+)(?:, (-\S+))? <value>' argument missing/.exec(message);
  if (missing !== null) return `${missing[2] ?? missing[1]} needs a value`;
  const noValue = /^Option '(-\S+)(?:, (-\S+))?' does not take an argument/.exec(message);
  if (noValue !== null) return `${noValue[2] ?? noValue[1]} takes no value`;
  const positional = /^Unexpected argument '([^']*)'/.exec(message);
  if (positional !== null) {
    return `unexpected argument "${positional[1]}": this command takes only options`;
  }
  return message;
}

/** The known option closest to `given` (a typo or a prefix), if one is close enough. */
export function nearestOption(given: string, options: ParseArgsOptionsConfig): string | undefined {
  const name = given.replace(/^-+/, "").split("=")[0]!;
  let best: { name: string; distance: number } | undefined;
  for (const known of Object.keys(options)) {
    const distance = known.startsWith(name) && name.length >= 3 ? 1 : editDistance(name, known);
    if (best === undefined || distance < best.distance) best = { name: known, distance };
  }
  if (best === undefined) return undefined;
  // A third of the name may be wrong, at least one letter, at most three.
  const allowed = Math.min(3, Math.max(1, Math.floor(best.name.length / 3)));
  return best.distance <= allowed ? `--${best.name}` : undefined;
}

/** Levenshtein distance (names are short: a plain table is fine). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        previous[j]! + 1,
        row[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = row;
  }
  return previous[b.length]!;
}
