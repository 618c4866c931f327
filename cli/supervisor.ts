/**
 * Keeps one `dst node` child of `dst start` running, as systemd's Restart= or an OTP supervisor
 * would: a node that dies (kill -9, a crash) is started again with the same command line after a
 * jittered backoff that grows while it keeps dying and resets once it has run a while. Its state
 * (pid, restarts, how it last ended, when the next try is) is what the status page and `dst
 * status` show under the leg. The child runs in its own session, so the terminal's Ctrl-C
 * reaches only `dst start`, which stops the storage before its nodes; and it is told
 * `--exit-with-parent`, so it stops by itself if `dst start` is killed.
 */
import { backoffDelay, type BackoffOptions } from "../actors/runtime/backoff.ts";
import type { TreeNode } from "../storage/assemble.ts";
import type { Logger } from "../util/log.ts";
import { SeededRandom } from "../util/random.ts";
import { elapsedText } from "../util/elapsed.ts";
import { selfCommand } from "./self.ts";

export interface SupervisorOptions {
  readonly log: Logger;
  /** Delays between restarts (default 500 ms growing to 30 s). */
  readonly backoff?: BackoffOptions;
  /** A run at least this long resets the backoff (default 60 s). */
  readonly stableMs?: number;
  /** How long a start may take to print its ready line (default 30 s). */
  readonly readyTimeoutMs?: number;
}

/** How a run of the process ended. */
export interface ExitInfo {
  readonly code: number;
  readonly signal: string | null;
  /** Wall time (ms since the epoch). */
  readonly at: number;
  /** Its last line on stderr, often the reason. */
  readonly lastLine?: string;
}

export interface ProcessStatus {
  readonly state: "starting" | "running" | "restarting" | "stopped";
  readonly pid?: number;
  readonly restarts: number;
  /** Wall time the current state began. */
  readonly since: number;
  readonly lastExit?: ExitInfo;
  /** While restarting: milliseconds until the next start. */
  readonly restartInMs?: number;
  /** One line for people: "running, pid 1234, restarted 2 times (last: killed by SIGKILL ...)". */
  readonly summary: string;
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000, factor: 2, jitter: 0.2 };

export class NodeSupervisor {
  #child: Deno.ChildProcess | undefined;
  #state: ProcessStatus["state"] = "starting";
  #since = Date.now();
  #restarts = 0;
  #attempt = 0;
  #lastExit: ExitInfo | undefined;
  #restartAt: number | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopping = false;
  #url: string | undefined;
  readonly #exited = new Set<() => void>();
  readonly #random = new SeededRandom(crypto.getRandomValues(new Uint32Array(1))[0]!);

  constructor(
    readonly name: string,
    readonly args: readonly string[],
    private readonly options: SupervisorOptions,
  ) {}

  /** The URL the node printed when it first became ready. */
  get url(): string | undefined {
    return this.#url;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the node and waits for its ready line; a first start that fails throws. */
  async start(): Promise<string> {
    const url = await this.#run();
    if (url === undefined) {
      const exit = this.#lastExit;
      throw new Error(
        `node ${this.name} exited with ${exitText(exit)} before it was ready` +
          (exit?.lastLine === undefined ? "" : `: ${exit.lastLine}`),
      );
    }
    this.#url = url;
    return url;
  }

  status(): ProcessStatus {
    const now = Date.now();
    const base = {
      state: this.#state,
      ...(this.#child === undefined || this.#state !== "running" ? {} : { pid: this.#child.pid }),
      restarts: this.#restarts,
      since: this.#since,
      ...(this.#lastExit === undefined ? {} : { lastExit: this.#lastExit }),
      ...(this.#restartAt === undefined ? {} : {
        restartInMs: Math.max(0, this.#restartAt - now),
      }),
    };
    return { ...base, summary: summary(base, now) };
  }

  /**
   * Stops the node for good: no restart, SIGTERM, SIGKILL if it is not gone within `deadlineMs`.
   * Resolves once it has exited.
   */
  async stop(deadlineMs: number): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    this.#restartAt = undefined;
    const child = this.#child;
    if (child === undefined || this.#state === "stopped" || this.#state === "restarting") {
      this.#state = "stopped";
      return;
    }
    const gone = new Promise<void>((resolve) => this.#exited.add(resolve));
    this.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), deadlineMs));
    if (await Promise.race([gone, late]) === "late") {
      this.options.log.log("warn", "node process did not stop in time; killing it", {
        node: this.name,
        pid: child.pid,
      });
      this.signal("SIGKILL");
      await gone;
    }
    clearTimeout(timer);
  }

  /** Sends `signal` to the running process, if there is one. */
  signal(signal: Deno.Signal): void {
    try {
      this.#child?.kill(signal);
    } catch {
      // already gone
    }
  }

  /** One run: spawn, wait for the ready line; resolves the URL, or undefined if it exited. */
  async #run(): Promise<string | undefined> {
    this.#setState("starting");
    const child = selfCommand(["node", ...this.args], {
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      // Its own session: a terminal's Ctrl-C is for dst start, which stops it in order.
      detached: true,
    }).spawn();
    this.#child = child;
    const started = Date.now();
    let lastLine: string | undefined;
    const stderrDone = forwardLines(child.stderr, (line) => {
      console.error(line);
      if (line.trim() !== "") lastLine = line;
    });
    const lines = readLines(child.stdout);
    const ready = (async () => {
      const first = await lines.next();
      // Keep draining so the child never blocks on a full pipe.
      void (async () => {
        for await (const _ of lines) { /* discard */ }
      })();
      return first.done ? undefined : first.value.trim();
    })();
    const status = child.status.then(async (s) => {
      await stderrDone;
      return s;
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) =>
      timer = setTimeout(() => r("timeout"), this.options.readyTimeoutMs ?? 30_000)
    );
    const url = await Promise.race([ready, status.then(() => undefined), timeout]);
    clearTimeout(timer);
    if (url === "timeout") {
      lastLine = "it printed no URL in time";
      this.signal("SIGKILL");
    }
    void status.then((s) => this.#onExit(child, s, started, lastLine));
    if (typeof url !== "string") {
      await status;
      return undefined;
    }
    this.#setState("running");
    return url;
  }

  #onExit(child: Deno.ChildProcess, s: Deno.CommandStatus, started: number, lastLine?: string) {
    if (this.#child !== child) return;
    // Our end of its stdin (its --exit-with-parent line) is of no more use.
    child.stdin.abort().catch(() => {});
    const exit: ExitInfo = {
      code: s.code,
      signal: s.signal,
      at: Date.now(),
      ...(lastLine === undefined ? {} : { lastLine }),
    };
    this.#lastExit = exit;
    for (const resolve of this.#exited) resolve();
    this.#exited.clear();
    if (this.#stopping) {
      this.#setState("stopped");
      return;
    }
    // A first start that fails is the caller's to report; later ones are restarted.
    if (this.#url === undefined && this.#restarts === 0) {
      this.#setState("stopped");
      return;
    }
    if (exit.at - started >= (this.options.stableMs ?? 60_000)) this.#attempt = 0;
    const wait = backoffDelay(
      ++this.#attempt,
      this.options.backoff ?? DEFAULT_BACKOFF,
      this.#random,
    );
    this.#restartAt = Date.now() + wait;
    this.#setState("restarting");
    this.options.log.log("warn", "node process exited; restarting it", {
      node: this.name,
      pid: child.pid,
      exit: exitText(exit),
      ...(lastLine === undefined ? {} : { lastLine }),
      restartInMs: wait,
      restarts: this.#restarts,
    });
    this.#timer = setTimeout(() => void this.#restart(), wait);
  }

  async #restart(): Promise<void> {
    if (this.#stopping) return;
    this.#restartAt = undefined;
    this.#restarts++;
    const url = await this.#run();
    if (url === undefined || this.#stopping) return;
    this.options.log.log("info", "node process restarted", {
      node: this.name,
      pid: this.#child?.pid,
      restarts: this.#restarts,
    });
  }

  #setState(state: ProcessStatus["state"]): void {
    this.#state = state;
    this.#since = Date.now();
  }
}

/** "code 1", "signal SIGKILL" */
export function exitText(exit: ExitInfo | undefined): string {
  if (exit === undefined) return "no status";
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

function summary(s: Omit<ProcessStatus, "summary">, now: number): string {
  const ago = (at: number) => `${elapsedText((now - at) / 1000)} ago`;
  const last = s.lastExit === undefined
    ? ""
    : `last exit: ${exitText(s.lastExit)} ${ago(s.lastExit.at)}` +
      (s.lastExit.lastLine === undefined ? "" : ` (${s.lastExit.lastLine.slice(0, 160)})`);
  const restarted = s.restarts === 0 ? "" : `restarted ${s.restarts}×`;
  switch (s.state) {
    case "running":
      return [`running (pid ${s.pid}, up ${elapsedText((now - s.since) / 1000)})`, restarted, last]
        .filter((t) => t !== "").join("; ");
    case "restarting":
      return [
        `exited, restarting in ${elapsedText((s.restartInMs ?? 0) / 1000)}`,
        restarted,
        last,
      ].filter((t) => t !== "").join("; ");
    case "starting":
      return ["starting", restarted, last].filter((t) => t !== "").join("; ");
    case "stopped":
      return ["stopped", last].filter((t) => t !== "").join("; ");
  }
}

/** Lines of a byte stream. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    pending += text;
    const parts = pending.split("\n");
    pending = parts.pop()!;
    yield* parts;
  }
  if (pending !== "") yield pending;
}

/** Calls `each` for every line of `stream`; resolves when it ends. */
async function forwardLines(
  stream: ReadableStream<Uint8Array>,
  each: (line: string) => void,
): Promise<void> {
  try {
    for await (const line of readLines(stream)) each(line);
  } catch {
    // the child is gone
  }
}

/**
 * `tree` with each supervised node's process status in its detail (`process`), read live; the
 * children are looked up on every read, so legs added and removed later still show.
 */
export function withProcessDetail(
  tree: TreeNode,
  processOf: (name: string) => ProcessStatus | undefined,
): TreeNode {
  return {
    name: tree.name,
    kind: tree.kind,
    size: tree.size,
    ...(tree.address === undefined ? {} : { address: tree.address }),
    get children() {
      return tree.children.map((child) => withProcessDetail(child, processOf));
    },
    state: () => {
      const own = tree.state();
      const process = processOf(tree.name);
      return process === undefined ? own : { ...own, detail: { ...own.detail, process } };
    },
  };
}
