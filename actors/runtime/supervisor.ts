/**
 * OTP-style supervisors: a behaviour that starts children in order, restarts the ones that exit
 * (one_for_one, one_for_all, rest_for_one) after a jittered exponential backoff, honours restart
 * types (permanent, transient, temporary), and fails upward once restarts exceed the intensity.
 * A restarted child keeps its ref; messages sent meanwhile wait in its bounded mailbox.
 */
import type { Timer } from "../../util/clock.ts";
import type { Actor, Behavior, ExitReason, SpawnOptions } from "./behavior.ts";
import { backoffDelay, type BackoffOptions, RestartWindow } from "./backoff.ts";
import { type Cell, supervise, type Supervising, within } from "./cell.ts";
import { type ActorRef, type AnyRef, formatRef } from "./ref.ts";

/**
 * Which children restart when one exits: only it (`one_for_one`), all of them (`one_for_all`),
 * or it and the ones started after it (`rest_for_one`).
 */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one";

/**
 * When a child is restarted: always (`permanent`), only after a crash or kill (`transient`), or
 * never (`temporary`).
 */
export type RestartType = "permanent" | "transient" | "temporary";

/** One child: its id (also its name in the path), behaviour, restart type and spawn options. */
export interface ChildSpec extends Omit<SpawnOptions, "name"> {
  readonly id: string;
  // deno-lint-ignore no-explicit-any
  readonly behavior: Behavior<any>;
  /** Default `permanent`. */
  readonly restart?: RestartType;
}

export interface SupervisorSpec {
  /** Default `one_for_one`. */
  readonly strategy?: Strategy;
  /** More than this many restarts within `periodMs` and the supervisor gives up. Default 3. */
  readonly intensity?: number;
  /** Default 5000 ms. */
  readonly periodMs?: number;
  readonly backoff?: BackoffOptions;
  /** Started in this order, stopped in reverse. */
  readonly children: readonly ChildSpec[];
}

/** A child as the supervisor sees it. */
export interface ChildStatus {
  readonly id: string;
  readonly ref: AnyRef;
  readonly state: "running" | "restarting";
}

/** Asks a supervisor for its children. */
export type SupervisorMessage = {
  readonly t: "which_children";
  readonly replyTo: ActorRef<ChildStatus[]>;
};

/** The error a supervisor fails with when its children restart too often. */
export class SupervisorGaveUpError extends Error {
  constructor(readonly supervisor: AnyRef, readonly restarts: number, readonly periodMs: number) {
    super(
      `supervisor ${formatRef(supervisor)} gave up: more than ${restarts} restarts within ` +
        `${periodMs} ms; fix the failing child or raise the intensity`,
    );
    this.name = "SupervisorGaveUpError";
  }
}

interface Entry {
  readonly spec: ChildSpec;
  readonly cell: Cell<unknown>;
  /** This child's recent restarts, for the backoff attempt number. */
  readonly recent: RestartWindow;
}

/**
 * A supervisor behaviour. Spawn it like any actor; its children live under its path
 * (`<supervisor>/<child id>`), so `system.resolve("sup/disk")` finds them.
 *
 * @example
 * ```ts
 * import { ActorSystem, supervisor } from "./mod.ts";
 *
 * const system = new ActorSystem({ node: "n1" });
 * system.spawn(supervisor({
 *   strategy: "one_for_one",
 *   intensity: 3,
 *   periodMs: 5000,
 *   backoff: { initialMs: 10, maxMs: 1000 },
 *   children: [{ id: "disk", behavior: () => (m: string) => console.log(m) }],
 * }), { name: "sup" });
 * system.tell(system.resolve<string>("sup/disk")!, "hello");
 * await system.shutdown();
 * ```
 */
export function supervisor(spec: SupervisorSpec): Behavior<SupervisorMessage> {
  return (ctx) => new SupervisorActor(ctx as Cell<SupervisorMessage>, spec);
}

class SupervisorActor implements Actor<SupervisorMessage>, Supervising {
  readonly #ctx: Cell<SupervisorMessage>;
  readonly #spec: SupervisorSpec;
  readonly #window: RestartWindow;
  readonly #entries: Entry[] = [];
  /** Serialises group restarts, whose member sets overlap. */
  #chain: Promise<void> = Promise.resolve();
  readonly #sleeps = new Map<Timer, () => void>();
  #stopped = false;

  constructor(ctx: Cell<SupervisorMessage>, spec: SupervisorSpec) {
    this.#ctx = ctx;
    this.#spec = spec;
    const periodMs = spec.periodMs ?? 5000;
    this.#window = new RestartWindow(spec.intensity ?? 3, periodMs);
    for (const child of spec.children) {
      const { id, behavior, restart: _, ...options } = child;
      ctx.spawn(behavior, { ...options, name: id });
      this.#entries.push({
        spec: child,
        cell: ctx.childCells.get(id)!,
        recent: new RestartWindow(Infinity, periodMs),
      });
    }
  }

  receive(message: SupervisorMessage): void {
    if (message.t === "which_children") {
      this.#ctx.tell(
        message.replyTo,
        this.#entries.map((e) => ({
          id: e.spec.id,
          ref: e.cell.self,
          state: e.cell.state === "running" ? "running" as const : "restarting" as const,
        })),
      );
    }
  }

  stopped(): void {
    this.#stopped = true;
    for (const [timer, wake] of this.#sleeps) (timer.cancel(), wake());
    this.#sleeps.clear();
  }

  [supervise](child: Cell<unknown>, reason: ExitReason, error: unknown): void {
    const entry = this.#entries.find((e) => e.cell === child);
    if (entry === undefined) {
      void child.shutdown(reason, error);
      return;
    }
    const work = () => this.#handleExit(entry, reason, error);
    if ((this.#spec.strategy ?? "one_for_one") === "one_for_one") {
      this.#ctx.defer(work());
    } else {
      this.#chain = this.#chain.then(work);
      this.#ctx.defer(this.#chain);
    }
  }

  async #handleExit(entry: Entry, reason: ExitReason, error: unknown): Promise<void> {
    if (this.#stopped || entry.cell.state !== "suspended") return;
    if (!restarts(entry.spec.restart ?? "permanent", reason)) {
      this.#remove(entry);
      await entry.cell.shutdownWithin(reason, error);
      return;
    }
    const now = this.#ctx.clock.now();
    if (!this.#window.record(now)) {
      await this.#giveUp();
      return;
    }
    const group = this.#group(entry);
    for (const other of [...group].reverse()) {
      if (other === entry) continue;
      if ((other.spec.restart ?? "permanent") === "temporary") {
        this.#remove(other);
        await other.cell.shutdownWithin("shutdown");
      } else {
        await within(
          this.#ctx.clock,
          other.cell.suspend("shutdown", undefined),
          other.cell.settings.shutdownMs,
        );
      }
    }
    entry.recent.record(now);
    const delay = backoffDelay(
      entry.recent.count(now),
      this.#spec.backoff ?? {},
      this.#ctx.random,
    );
    await this.#sleep(delay);
    if (this.#stopped) return;
    for (const member of group) {
      if (this.#entries.includes(member)) member.cell.requestRestart();
    }
  }

  #group(entry: Entry): Entry[] {
    switch (this.#spec.strategy ?? "one_for_one") {
      case "one_for_one":
        return [entry];
      case "one_for_all":
        return [...this.#entries];
      case "rest_for_one":
        return this.#entries.slice(this.#entries.indexOf(entry));
    }
  }

  async #giveUp(): Promise<void> {
    const { intensity, periodMs } = this.#window;
    this.#ctx.log.log("error", "supervisor gave up", { supervisor: formatRef(this.#ctx.self) });
    for (const entry of [...this.#entries].reverse()) await entry.cell.shutdownWithin("shutdown");
    this.#entries.length = 0;
    this.#ctx.crash(new SupervisorGaveUpError(this.#ctx.self, intensity, periodMs));
  }

  #remove(entry: Entry): void {
    const at = this.#entries.indexOf(entry);
    if (at >= 0) this.#entries.splice(at, 1);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#ctx.clock.setTimeout(() => {
        this.#sleeps.delete(timer);
        resolve();
      }, ms);
      this.#sleeps.set(timer, resolve);
    });
  }
}

function restarts(type: RestartType, reason: ExitReason): boolean {
  if (type === "permanent") return true;
  if (type === "temporary") return false;
  return reason !== "normal" && reason !== "shutdown";
}
