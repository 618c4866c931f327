/** Command-line flags for every `dst` subcommand: strict, no positionals, mistakes are UsageErrors. */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { UsageError } from "./command.ts";

/** Parses `args` against `options`; an unknown or malformed flag throws UsageError (exit 2). */
export function parseFlags<const O extends ParseArgsOptionsConfig>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
}
