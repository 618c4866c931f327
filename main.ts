/**
 * The `dst` command: one entrypoint, a subcommand per job. Run it with `deno task dst ARGS...`
 * from a checkout, or install it with `deno install --global -A --unstable-net -n dst main.ts`.
 */
import { type Command, UsageError } from "./cli/command.ts";
import { commands } from "./cli/commands.ts";

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    "dst: distributed block storage",
    "",
    "Usage: dst COMMAND [OPTIONS]",
    "",
    "Commands:",
    ...lines,
    "",
    "Run `dst COMMAND --help` for a command's options.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command: Command | undefined = commands.find((c) => c.name === name);
  if (command === undefined) {
    console.error(`dst: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.help);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`dst ${name}: ${error.message}\n\n${command.help}`);
      return 2;
    }
    console.error(`dst ${name}: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
