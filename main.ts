/**
 * The `dst` command: one entrypoint, a subcommand per job. Run it with `deno task dst ARGS...`
 * from a checkout, or install it with `deno task install` (a self-contained copy; see
 * deploy/README.md).
 */
import { type Command, UsageError } from "./cli/command.ts";
import { commands } from "./cli/commands.ts";
import { editDistance } from "./cli/flags.ts";
import { takeLogFlags, versionText } from "./cli/global.ts";

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    "dst: distributed block storage",
    "",
    "Usage: dst COMMAND [OPTIONS]",
    "       dst help COMMAND | dst --version",
    "",
    "Commands:",
    ...lines,
    "",
    "Every command takes --log-level LEVEL and --log-format text|json.",
    "Run `dst COMMAND --help` (or `dst help COMMAND`) for a command's options.",
  ].join("\n");
}

/** The command called `name`, or a UsageError naming the nearest one. */
function commandNamed(name: string): Command {
  const command = commands.find((c) => c.name === name);
  if (command !== undefined) return command;
  const near = commands
    .map((c) => ({ name: c.name, d: c.name.startsWith(name) ? 0 : editDistance(name, c.name) }))
    .sort((a, b) => a.d - b.d)[0];
  const hint = near !== undefined && near.d <= 2 ? ` (did you mean "${near.name}"?)` : "";
  throw new UsageError(`unknown command "${name}"${hint}; run \`dst --help\` for the commands`);
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...given] = argv;
  if (name === undefined) {
    console.error(usage());
    return 2;
  }
  if (name === "--help" || name === "-h" || (name === "help" && given.length === 0)) {
    console.log(usage());
    return 0;
  }
  if (name === "--version" || name === "-V" || name === "version") {
    console.log(versionText());
    return 0;
  }
  let command: Command;
  try {
    command = commandNamed(name === "help" ? given[0]! : name);
  } catch (error) {
    console.error(`dst: ${(error as Error).message}`);
    return 2;
  }
  if (name === "help" || given.includes("--help") || given.includes("-h")) {
    console.log(command.help);
    return 0;
  }
  try {
    return await command.run(takeLogFlags(given));
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(
        `dst ${command.name}: ${error.message}\n` +
          `Run \`dst ${command.name} --help\` for its options.`,
      );
      return command.usageExitCode ?? 2;
    }
    console.error(`dst ${command.name}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
