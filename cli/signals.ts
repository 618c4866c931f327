/**
 * How every long-running `dst` command stops: the first SIGTERM or SIGINT starts a graceful
 * shutdown, and a deadline bounds it whatever the links are doing (a dead node, a client that
 * never reads). When the deadline passes, or a second signal comes, the process logs which
 * shutdown steps it abandons and exits; the OS closes its sockets, which fails what was pending.
 */
import { formatDuration, parseDuration } from "../util/duration.ts";
import type { Logger } from "../util/log.ts";
import { UsageError } from "./command.ts";

/** How long a graceful shutdown may take unless `--shutdown-timeout` says otherwise. */
export const DEFAULT_SHUTDOWN_MS = 5000;

/** The `--shutdown-timeout` flag's text, shared by every command's help. */
export const SHUTDOWN_HELP = `  --shutdown-timeout DURATION
                      how long a graceful stop may take before what is left is abandoned
                      and the process exits (default 5s)`;

/** The `--shutdown-timeout` value in milliseconds; a bad one is a UsageError. */
export function shutdownTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_SHUTDOWN_MS;
  try {
    return parseDuration(text);
  } catch (error) {
    throw new UsageError(`--shutdown-timeout ${(error as Error).message}`);
  }
}

export interface StopOptions {
  readonly log: Logger;
  /** How long the shutdown may take after the first signal (default 5 s). */
  readonly deadlineMs?: number;
  /** Runs when the deadline passes, before the exit: e.g. SIGKILL to child processes. */
  readonly onAbandon?: () => void;
  /** How the process ends when it abandons its shutdown (tests replace it). */
  readonly exit?: (code: number) => void;
}

export interface StopSignal {
  /** Resolves with the first SIGTERM or SIGINT, or the reason given to {@link request}. */
  readonly signal: Promise<string>;
  /** Starts the shutdown as a first signal would (e.g. "parent exited"). */
  request(reason: string): void;
  /**
   * Runs one named step of the work (starting up, closing the NBD server, flushing...), so an
   * abandoned shutdown can say what it left; `what` may be a function for a live description.
   */
  step<T>(what: string | (() => string), work: () => Promise<T>): Promise<T>;
  /** Removes the listeners and the deadline: the shutdown finished in time. */
  dispose(): void;
}

/** Exit code of a process that abandoned its shutdown at the deadline. */
export const ABANDONED_EXIT = 1;

/** Listens for SIGTERM and SIGINT; the first starts the deadline, the second ends at once. */
export function untilStopSignal(options: StopOptions): StopSignal {
  const deadlineMs = options.deadlineMs ?? DEFAULT_SHUTDOWN_MS;
  const exit = options.exit ?? ((code: number) => Deno.exit(code));
  const { promise, resolve } = Promise.withResolvers<string>();
  const running = new Set<{ what: string | (() => string) }>();
  let received: string | undefined;
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let disposed = false;

  const abandon = (why: string) => {
    if (disposed) return;
    disposed = true;
    const abandoned = [...running].map((s) => typeof s.what === "string" ? s.what : s.what());
    options.log.log("error", `${why}; exiting and abandoning what is still running`, {
      abandoned: abandoned.length === 0 ? ["(nothing named)"] : abandoned,
    });
    try {
      options.onAbandon?.();
    } finally {
      remove();
      exit(ABANDONED_EXIT);
    }
  };
  const onSignal = (signal: string) => {
    if (received !== undefined) {
      abandon(`second ${signal} during shutdown`);
      return;
    }
    received = signal;
    deadline = setTimeout(
      () => abandon(`shutdown deadline of ${formatDuration(deadlineMs)} passed`),
      deadlineMs,
    );
    resolve(signal);
  };
  const handlers = (["SIGTERM", "SIGINT"] as const).map((signal) => {
    const handler = () => onSignal(signal);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  const remove = () => {
    for (const [signal, handler] of handlers) {
      try {
        Deno.removeSignalListener(signal, handler);
      } catch {
        // already removed
      }
    }
    if (deadline !== undefined) clearTimeout(deadline);
  };
  return {
    signal: promise,
    request: (reason) => {
      if (received === undefined && !disposed) onSignal(reason);
    },
    step: async (what, work) => {
      const entry = { what };
      running.add(entry);
      try {
        return await work();
      } finally {
        running.delete(entry);
      }
    },
    dispose: () => {
      if (disposed) return;
      disposed = true;
      remove();
    },
  };
}
