/**
 * One real `dst` process of a drill (a node or a serve): started with the same arguments every
 * time so a restart reopens the same media, optionally inside a network namespace, read until it
 * prints what it serves, and signalled for faults (SIGKILL, SIGSTOP/SIGCONT, SIGTERM). Its stderr
 * is kept (the tail) for the report when something goes wrong. A serve of a cluster is ready once
 * it stands by; what it prints when it is elected later (URIs, status) is read as it comes, and
 * its lines can be watched (`onLine`) to time an election.
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
  /** Printed by a cluster serve that stands by. */
  readonly standby?: string;
}

export class DrillProcess {
  #child: Deno.ChildProcess | undefined;
  #exited: Promise<Deno.CommandStatus> | undefined;
  #stderr = "";
  #served: Served = {};
  #hung = false;
  #exitCode: number | undefined;
  /** Told of every line the process prints, on either stream, as it comes. */
  onLine: ((line: string, stream: "stdout" | "stderr") => void) | undefined;

  constructor(readonly plan: ProcessPlan) {}

  /** The code it exited with by itself (undefined while it runs, or after `stop`). */
  get exitCode(): number | undefined {
    return this.#exitCode;
  }

  /** Resolves with the exit code once the process ends by itself (at most `ms`). */
  async exited(ms: number): Promise<number | undefined> {
    const exited = this.#exited;
    if (exited === undefined) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      exited,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms)),
    ]);
    clearTimeout(timer);
    if (status === undefined) return undefined;
    this.#child = undefined;
    this.#hung = false;
    return status.code;
  }

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
    this.#exitCode = undefined;
    void child.status.then((s) => {
      if (this.#child === child) this.#exitCode = s.code;
    });
    let partial = "";
    void child.stderr.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({
        write: (text) => {
          this.#stderr = (this.#stderr + text).slice(-STDERR_TAIL);
          const lines = (partial + text).split("\n");
          partial = lines.pop()!;
          for (const line of lines) this.onLine?.(line, "stderr");
        },
      }),
    ).catch(() => {});
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const served: { nodeUrl?: string; nbdUri?: string; statusUrl?: string; standby?: string } = {};
    this.#served = served;
    const ready = () =>
      this.plan.kind === "node"
        ? served.nodeUrl !== undefined
        : served.statusUrl !== undefined || served.standby !== undefined;
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
    // Keep reading (a standby prints where it serves once elected), so the child never
    // blocks on a full pipe either.
    void (async () => {
      for (;;) {
        const { value, done } = await reader.read().catch(() => ({ value: "", done: true }));
        if (done) return;
        pending += value;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) this.#take(line.trim(), served);
      }
    })();
    if (!ready()) {
      const status = await child.status;
      this.#child = undefined;
      throw new Error(
        `${this.name} exited with code ${status.code} before it was ready:\n${this.#stderr}`,
      );
    }
    this.#hung = false;
  }

  #take(
    line: string,
    served: { nodeUrl?: string; nbdUri?: string; statusUrl?: string; standby?: string },
  ): void {
    this.onLine?.(line, "stdout");
    if (this.plan.kind === "node") {
      if (served.nodeUrl === undefined && line !== "") served.nodeUrl = line;
      return;
    }
    if (line.startsWith("nbd")) served.nbdUri = line;
    else if (line.startsWith("node ")) served.nodeUrl = line.slice(5);
    else if (line.startsWith("status ")) served.statusUrl = line.slice(7).replace(/\/$/, "");
    else if (line.startsWith("standby ")) served.standby = line.slice(8);
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
