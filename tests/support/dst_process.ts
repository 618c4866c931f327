/**
 * Runs `dst SUBCOMMAND ...` as a real child process for integration tests: waits until it has
 * printed the lines that say it is ready, keeps its output for assertions, and always ends it
 * (SIGTERM, then SIGKILL) so no test leaves a process behind.
 */

const mainTs = new URL("../../main.ts", import.meta.url).pathname;

export interface DstProcess {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  /** The stdout lines printed up to readiness. */
  readonly lines: string[];
  /** Sends `signal` (default SIGTERM), waits for exit (SIGKILL after 10 s): code and stderr. */
  stop(signal?: Deno.Signal): Promise<{ code: number; stderr: string }>;
}

export interface SpawnOptions {
  /** Ready once this many stdout lines matched `ready` (default: one line, any content). */
  readonly ready?: RegExp;
  readonly readyLines?: number;
  readonly timeoutMs?: number;
  readonly env?: Record<string, string>;
}

export async function spawnDst(args: string[], options: SpawnOptions = {}): Promise<DstProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", mainTs, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.env === undefined ? {} : { env: options.env }),
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const ready = options.ready ?? /./;
  const want = options.readyLines ?? 1;
  const lines: string[] = [];
  let matched = 0;
  let pending = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  try {
    while (matched < want) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const line of parts) {
        lines.push(line);
        if (ready.test(line)) matched++;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  const drained = (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) { /* discard */ }
  })();
  let exited: Promise<{ code: number; stderr: string }> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    exited ??= (async () => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone
        }
      }, 10_000);
      const status = await child.status;
      clearTimeout(killer);
      await drained;
      return { code: status.code, stderr: await stderr };
    })();
    return exited;
  };
  if (matched < want) {
    const { code, stderr: err } = await stop("SIGKILL");
    throw new Error(
      `dst ${args[0]} exited ${code} before it was ready:\n${lines.join("\n")}\n${err}`,
    );
  }
  return { child, pid: child.pid, lines, stop };
}

/** Runs `dst ARGS` to completion (a command that is expected to exit): code and output. */
export async function runDst(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", mainTs, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}
