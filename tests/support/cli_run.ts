/**
 * Helpers for the operator tests: run `dst ARGS` to completion with its own environment and
 * folder, start `dst start` as a session leader (so a test can send it a terminal's Ctrl-C: a
 * SIGINT to its whole process group), read its status, and wait for a condition, bounded.
 */
import type { StatusJson, TreeJson } from "../../status/tree.ts";

export const mainTs = new URL("../../main.ts", import.meta.url).pathname;

export interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `dst ARGS` to completion (killed after `timeoutMs`). */
export async function dst(
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<Ran> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--unstable-net", "--allow-all", mainTs, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  }).spawn();
  const timer = setTimeout(() => kill(child.pid, "SIGKILL"), options.timeoutMs ?? 60_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

export function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Whether `pid` runs (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Polls `check` every 100 ms until it returns a value other than undefined; throws after `ms`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined> | T | undefined,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** GET `url`: status and body text. */
export async function get(url: string): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: response.status, text: await response.text() };
}

export async function statusOf(statusUrl: string): Promise<StatusJson> {
  return JSON.parse((await get(`${statusUrl}api/tree`)).text) as StatusJson;
}

/** The tree node called `name`. */
export function nodeNamed(tree: TreeJson, name: string): TreeJson | undefined {
  if (tree.name === name) return tree;
  for (const child of tree.children) {
    const found = nodeNamed(child, name);
    if (found !== undefined) return found;
  }
  return undefined;
}

export interface StartProcess {
  readonly pid: number;
  /** Stdout lines up to and including "Ctrl-C stops it...". */
  readonly lines: string[];
  readonly statusUrl: string;
  readonly nbd: string;
  /** The pids of its node processes (children of dst start). */
  nodePids(): number[];
  /** Waits for the exit (SIGKILL to the group after `ms`): code and all of stderr. */
  exited(ms?: number): Promise<{ code: number; stderr: string }>;
}

/**
 * Starts `dst start ARGS` through `setsid`, as a terminal would run it in a process group of
 * its own; waits until it printed that it is up.
 */
export async function spawnStart(args: readonly string[]): Promise<StartProcess> {
  const child = new Deno.Command("setsid", {
    args: [Deno.execPath(), "run", "--unstable-net", "--allow-all", mainTs, "start", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const lines: string[] = [];
  let pending = "";
  const timer = setTimeout(() => kill(-child.pid, "SIGKILL"), 60_000);
  try {
    while (!lines.some((l) => l.startsWith("Ctrl-C"))) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      lines.push(...parts);
    }
  } finally {
    clearTimeout(timer);
  }
  const drained = (async () => {
    while (!(await reader.read().catch(() => ({ done: true }))).done) { /* discard */ }
  })();
  let exit: Promise<{ code: number; stderr: string }> | undefined;
  const exited = (ms = 20_000) => {
    exit ??= (async () => {
      const killer = setTimeout(() => kill(-child.pid, "SIGKILL"), ms);
      const status = await child.status;
      clearTimeout(killer);
      await drained;
      return { code: status.code, stderr: await stderr };
    })();
    return exit;
  };
  if (!lines.some((l) => l.startsWith("Ctrl-C"))) {
    kill(-child.pid, "SIGKILL");
    const { code, stderr: err } = await exited();
    throw new Error(`dst start exited ${code} before it was up:\n${lines.join("\n")}\n${err}`);
  }
  const field = (name: string) =>
    lines.find((l) => l.startsWith(`${name}:`))!.slice(name.length + 1).trim();
  return {
    pid: child.pid,
    lines,
    statusUrl: field("status"),
    nbd: field("NBD"),
    nodePids: () => childrenOf(child.pid),
    exited,
  };
}

/** Pids whose parent is `pid` (Linux /proc). */
export function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid && alive(Number(entry.name))) found.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Makes a temporary folder, runs `fn` in it, removes it. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
