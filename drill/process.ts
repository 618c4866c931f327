/**
 * One real `dst` process of a drill (a node or a serve): started with the same arguments every
 * time so a restart reopens the same media, optionally inside a network namespace, read until it
 * prints what it serves, and signalled for faults (SIGKILL, SIGSTOP/SIGCONT, SIGTERM). Its stderr
 * is kept (the tail) for the report when something goes wrong.
 */

import { selfArgs } from "../cli/self.ts";

const STDERR_TAIL = 8192;

export interface ProcessPlan {
  readonly name: string;
  readonly kind: "node" | "serve";
  /** The `dst` arguments after `run ... main.ts`. */
  readonly args: readonly string[];
  /** Run inside this network namespace (`ip netns exec`). */
  readonly ns?: string;
}

/** What a started process said it serves. */
export interface Served {
  readonly nodeUrl?: string;
  readonly nbdUri?: string;
  readonly statusUrl?: string;
}

export class DrillProcess {
  #child: Deno.ChildProcess | undefined;
  #exited: Promise<Deno.CommandStatus> | undefined;
  #stderr = "";
  #served: Served = {};
  #hung = false;

  constructor(readonly plan: ProcessPlan) {}

  get name(): string {
    return this.plan.name;
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  get running(): boolean {
    return this.#child !== undefined;
  }
  get hung(): boolean {
    return this.#hung;
  }
  get served(): Served {
    return this.#served;
  }
  get stderrTail(): string {
    return this.#stderr;
  }

  /** Spawns the process and waits until it printed its ready lines (at most `timeoutMs`). */
  async start(timeoutMs = 30_000): Promise<void> {
    if (this.#child !== undefined) throw new Error(`${this.name} is already running`);
    // This same dst, from a checkout or an installed bundle alike.
    const deno = [Deno.execPath(), ...selfArgs(), ...this.plan.args];
    const [cmd, ...args] = this.plan.ns === undefined
      ? deno
      : ["ip", "netns", "exec", this.plan.ns, ...deno];
    const child = new Deno.Command(cmd!, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#exited = child.status;
    this.#stderr = "";
    void child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write: (text) => {
          this.#stderr = (this.#stderr + text).slice(-STDERR_TAIL);
        },
      }),
    ).catch(() => {});
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const served: { nodeUrl?: string; nbdUri?: string; statusUrl?: string } = {};
    const ready = () =>
      this.plan.kind === "node" ? served.nodeUrl !== undefined : served.statusUrl !== undefined;
    const timer = setTimeout(() => this.#signal("SIGKILL"), timeoutMs);
    let pending = "";
    try {
      while (!ready()) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) this.#take(line.trim(), served);
      }
    } finally {
      clearTimeout(timer);
    }
    // Keep draining so the child never blocks on a full pipe.
    void (async () => {
      while (!(await reader.read().catch(() => ({ done: true }))).done) { /* discard */ }
    })();
    if (!ready()) {
      const status = await child.status;
      this.#child = undefined;
      throw new Error(
        `${this.name} exited with code ${status.code} before it was ready:\n${this.#stderr}`,
      );
    }
    this.#served = served;
    this.#hung = false;
  }

  #take(line: string, served: { nodeUrl?: string; nbdUri?: string; statusUrl?: string }): void {
    if (this.plan.kind === "node") {
      if (served.nodeUrl === undefined && line !== "") served.nodeUrl = line;
      return;
    }
    if (line.startsWith("nbd")) served.nbdUri = line;
    else if (line.startsWith("node ")) served.nodeUrl = line.slice(5);
    else if (line.startsWith("status ")) served.statusUrl = line.slice(7).replace(/\/$/, "");
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#child?.kill(signal);
    } catch {
      // already gone
    }
  }

  /** SIGSTOP: the process stays, answers nothing (a hung node). */
  hang(): void {
    this.#signal("SIGSTOP");
    this.#hung = true;
  }

  unhang(): void {
    this.#signal("SIGCONT");
    this.#hung = false;
  }

  /** Ends the process with `signal` (SIGKILL after 10 s) and waits for it. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number | undefined> {
    const child = this.#child;
    if (child === undefined) return undefined;
    if (this.#hung && signal !== "SIGKILL") this.unhang();
    this.#signal(signal);
    const killer = setTimeout(() => this.#signal("SIGKILL"), 10_000);
    const status = await this.#exited!;
    clearTimeout(killer);
    this.#child = undefined;
    this.#hung = false;
    return status.code;
  }
}
