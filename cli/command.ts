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
  /**
   * Exit code for a bad command line (default 2). `dst status` answers health with 0, 1 and 2,
   * so its usage errors need a code of their own.
   */
  readonly usageExitCode?: number;
  /** Runs with the arguments after the subcommand name; resolves the process exit code. */
  run(args: string[]): Promise<number>;
}

/** A bad command line: said in one line with where to find the options; exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
