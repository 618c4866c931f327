/**
 * Flags of the benchmark entrypoints: `--help` prints the usage, and an unknown option or a value
 * that is not what the flag takes ends the run at once with one line naming it and the usage
 * (exit 2), before any server is started.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parses `args` against `options` (plus `--help`), or exits as above. */
export function benchArgs<O extends Options>(
  usage: string,
  options: O,
  args: string[] = Deno.args,
): ReturnType<typeof parseArgs<{ args: string[]; options: O }>>["values"] {
  try {
    const { values } = parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
    });
    if ((values as { help?: boolean }).help) {
      console.log(usage);
      Deno.exit(0);
    }
    return values as ReturnType<typeof parseArgs<{ args: string[]; options: O }>>["values"];
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e), usage);
  }
}

/** A number flag: the value, `fallback` when absent, or exit naming the flag. */
export function numberFlag(
  value: string | undefined,
  flag: string,
  fallback: number,
  usage: string,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    fail(`${flag} must be a positive number, got "${value}"`, usage);
  }
  return n;
}

function fail(message: string, usage: string): never {
  console.error(`bench: ${message}\n${usage}`);
  Deno.exit(2);
}
