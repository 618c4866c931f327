/**
 * The shape of a `dst` subcommand, so `main.ts` can list, dispatch and print help for each one
 * the same way. A command file exports one {@link Command}.
 */

export interface Command {
  readonly name: string;
  /** One line for the command list. */
  readonly summary: string;
  /** The full `--help` text. */
  readonly help: string;
  /** Runs with the arguments after the subcommand name; resolves the process exit code. */
  run(args: string[]): Promise<number>;
}

/** A bad command line: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
