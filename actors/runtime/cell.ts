/**
 * The actor cell: one actor's mailbox, current behaviour instance and lifecycle (running,
 * suspended after a failure while its supervisor decides, stopping, terminated). It runs one
 * message at a time (or up to `concurrency` async ones), system messages first, and yields to the
 * event loop after `throughput` messages.
 */
import type { Clock } from "../../util/clock.ts";
import type { Logger } from "../../util/log.ts";
import type { Random } from "../../util/random.ts";
import type {
  Actor,
  ActorContext,
  Behavior,
  Down,
  ExitReason,
  SpawnOptions,
  TellResult,
} from "./behavior.ts";
import { Mailbox } from "./mailbox.ts";
import { type ActorRef, type AnyRef, formatRef } from "./ref.ts";
import type { ActorSystem } from "./system.ts";

/**
 * Marks a behaviour that supervises its children: a child that exits is then suspended and
 * handed to this method instead of being terminated.
 */
export const supervise: unique symbol = Symbol("supervise");

/** An actor that decides the fate of its exiting children (see supervisor.ts). */
export interface Supervising {
  [supervise](child: Cell<unknown>, reason: ExitReason, error: unknown): void;
}

type SystemMessage =
  | { readonly kind: "stop" }
  | { readonly kind: "restart" }
  | {
    readonly kind: "down";
    readonly down: Down;
    readonly generation: number;
    readonly map: (down: Down) => unknown;
  }
  | {
    readonly kind: "child";
    readonly child: Cell<unknown>;
    readonly reason: ExitReason;
    readonly error: unknown;
  };

type State = "running" | "suspended" | "stopping" | "terminated";

/** Settings resolved from {@link SpawnOptions} and the system's defaults. */
export interface CellSettings {
  readonly capacity: number;
  readonly throughput: number;
  readonly concurrency: number;
  readonly shutdownMs: number;
}

/** Runs `work` with a time limit on `clock`; resolves true if it finished in time. */
export function within(clock: Clock, work: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(() => resolve(false), ms);
    work.then(
      () => (timer.cancel(), resolve(true)),
      () => (timer.cancel(), resolve(true)),
    );
  });
}

function isPromise(value: unknown): value is Promise<unknown> {
  return value !== undefined && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}

export class Cell<M> implements ActorContext<M> {
  readonly self: ActorRef<M>;
  readonly parent: AnyRef | undefined;
  readonly settings: CellSettings;
  /** Running children by name, in start order. */
  readonly childCells = new Map<string, Cell<unknown>>();

  readonly #parent: Cell<unknown> | undefined;
  readonly #behavior: Behavior<M>;
  readonly #mailbox: Mailbox<M, SystemMessage>;
  readonly #watchers = new Set<(down: Down) => void>();
  /** Watches this actor holds on others, by printed ref, to undo on restart or stop. */
  readonly #watching = new Map<string, () => void>();
  #actor: Actor<M> | undefined;
  #state: State = "running";
  #scheduled = false;
  #inFlight = 0;
  /** Bumped on every restart and stop, so work of an earlier instance cannot touch this one. */
  #generation = 0;
  #terminated: Promise<void> | undefined;
  readonly #run = () => this.#drain();

  constructor(
    readonly system: ActorSystem,
    self: ActorRef<M>,
    parent: Cell<unknown> | undefined,
    behavior: Behavior<M>,
    settings: CellSettings,
  ) {
    this.self = self;
    this.#parent = parent;
    this.parent = parent?.self;
    this.#behavior = behavior;
    this.settings = settings;
    this.#mailbox = new Mailbox(settings.capacity);
  }

  get clock(): Clock {
    return this.system.clock;
  }

  get random(): Random {
    return this.system.random;
  }

  get log(): Logger {
    return this.system.log;
  }

  get state(): State {
    return this.#state;
  }

  /** Makes the first instance; throws what the behaviour throws. */
  start(): void {
    this.#actor = this.#instantiate();
  }

  #instantiate(): Actor<M> {
    const made = this.#behavior(this);
    return typeof made === "function" ? { receive: made } : made;
  }

  // ---- ActorContext ----

  tell<T>(ref: ActorRef<T>, message: T): TellResult {
    return this.system.tell(ref, message);
  }

  ask<Q, R>(ref: ActorRef<Q>, build: (replyTo: ActorRef<R>) => Q, deadlineMs: number): Promise<R> {
    return this.system.ask(ref, build, deadlineMs);
  }

  spawn<C>(behavior: Behavior<C>, options?: SpawnOptions): ActorRef<C> {
    if (this.#state === "stopping" || this.#state === "terminated") {
      throw new Error(`${formatRef(this.self)} is stopping and cannot spawn children`);
    }
    return this.system.spawnCell(behavior, options ?? {}, this as Cell<unknown>).self;
  }

  watch(ref: AnyRef, onDown: (down: Down) => M): void {
    const key = formatRef(ref);
    if (this.#watching.has(key)) return;
    const generation = this.#generation;
    const unwatch = this.system.watch(ref, (down) => {
      this.#watching.delete(key);
      this.postSystem({ kind: "down", down, generation, map: onDown });
    });
    // A noproc down may already have been queued synchronously; only keep live watches.
    this.#watching.set(key, unwatch);
  }

  unwatch(ref: AnyRef): void {
    const key = formatRef(ref);
    const unwatch = this.#watching.get(key);
    if (unwatch === undefined) return;
    this.#watching.delete(key);
    unwatch();
  }

  defer(work: Promise<unknown>): void {
    const generation = this.#generation;
    work.then(undefined, (error) => {
      if (generation === this.#generation) this.#exit("crash", error);
    });
  }

  stop(): void {
    this.postSystem({ kind: "stop" });
  }

  children(): AnyRef[] {
    return [...this.childCells.values()].map((c) => c.self);
  }

  // ---- delivery ----

  /** Queues a user message. */
  post(message: M): TellResult {
    if (this.#state === "stopping" || this.#state === "terminated") return "dead";
    if (!this.#mailbox.post(message)) return "overloaded";
    if (this.#state === "running") this.#schedule();
    return "accepted";
  }

  /** Queues a system message; they run before any queued user message. */
  postSystem(message: SystemMessage): void {
    if (this.#state === "terminated") return;
    this.#mailbox.postSystem(message);
    this.#schedule();
  }

  /** Registers a callback for this actor's final stop; returns the undo. */
  addWatcher(onDown: (down: Down) => void): () => void {
    this.#watchers.add(onDown);
    return () => this.#watchers.delete(onDown);
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(this.#run);
  }

  #drain(): void {
    this.#scheduled = false;
    const box = this.#mailbox;
    for (let budget = this.settings.throughput; budget > 0; budget--) {
      const system = box.takeSystem();
      if (system !== undefined) {
        this.#handleSystem(system);
        continue;
      }
      if (this.#state !== "running" || this.#inFlight >= this.settings.concurrency) return;
      if (!box.hasUser) return;
      this.#invoke(box.takeUser() as M);
    }
    // Budget spent with work left: let timers and I/O run before the next turn.
    if (
      box.hasSystem ||
      (this.#state === "running" && box.hasUser && this.#inFlight < this.settings.concurrency)
    ) {
      this.#scheduled = true;
      this.system.yieldToHost(this.#run);
    }
  }

  #invoke(message: M): void {
    const actor = this.#actor!;
    let result: void | Promise<unknown>;
    try {
      result = actor.receive(message);
    } catch (error) {
      this.#exit("crash", error);
      return;
    }
    if (!isPromise(result)) return;
    this.#inFlight++;
    const generation = this.#generation;
    result.then(
      () => {
        if (generation !== this.#generation) return;
        this.#inFlight--;
        if (this.#mailbox.hasUser) this.#schedule();
      },
      (error) => {
        if (generation === this.#generation) this.#exit("crash", error);
      },
    );
  }

  #handleSystem(message: SystemMessage): void {
    switch (message.kind) {
      case "stop":
        this.#exit("normal", undefined);
        return;
      case "restart":
        this.#restart();
        return;
      case "down":
        if (this.#state === "running" && message.generation === this.#generation) {
          this.#invoke(message.map(message.down) as M);
        }
        return;
      case "child": {
        const actor = this.#actor as (Actor<M> & Partial<Supervising>) | undefined;
        if (this.#state === "running" && actor?.[supervise] !== undefined) {
          actor[supervise](message.child, message.reason, message.error);
        } else {
          void message.child.shutdown(message.reason, message.error);
        }
        return;
      }
    }
  }

  // ---- lifecycle ----

  /** True when this actor's exits are decided by a supervising parent. */
  #supervised(): boolean {
    const parent = this.#parent;
    return parent !== undefined && parent.#state === "running" &&
      (parent.#actor as Partial<Supervising> | undefined)?.[supervise] !== undefined;
  }

  /** The actor stopped or crashed by itself: suspend for the supervisor, or terminate. */
  #exit(reason: ExitReason, error: unknown): void {
    if (this.#state !== "running") return;
    if (reason === "crash") {
      this.log.log("warn", "actor crashed", { actor: formatRef(this.self), error: String(error) });
    }
    if (!this.#supervised()) {
      void this.shutdown(reason, error);
      return;
    }
    const parent = this.#parent!;
    void this.suspend(reason, error).then(() =>
      parent.postSystem({ kind: "child", child: this as Cell<unknown>, reason, error })
    );
  }

  /** Crashes this actor from outside its handlers (a supervisor giving up). */
  crash(error: unknown): void {
    this.#exit("crash", error);
  }

  /**
   * Stops the current instance but keeps the mailbox and ref, so a restart can follow: user
   * messages wait, children and watches of the old instance are stopped, `stopped` runs.
   */
  async suspend(reason: ExitReason, error: unknown): Promise<void> {
    if (this.#state !== "running") return;
    this.#state = "suspended";
    this.#generation++;
    this.#inFlight = 0;
    await this.#cleanup(reason, error);
  }

  #restart(): void {
    if (this.#state !== "suspended") return;
    this.#state = "running";
    try {
      this.#actor = this.#instantiate();
    } catch (error) {
      this.#exit("crash", error);
      return;
    }
    if (this.#mailbox.hasUser) this.#schedule();
  }

  /** Asks the supervisor-owned restart to run ahead of queued user messages. */
  requestRestart(): void {
    this.postSystem({ kind: "restart" });
  }

  /**
   * Stops for good: children in reverse start order, `stopped`, then watchers get a down with
   * `reason`. Resolves when done; the caller bounds the wait (see {@link shutdownWithin}).
   */
  shutdown(reason: ExitReason, error?: unknown): Promise<void> {
    if (this.#terminated !== undefined) return this.#terminated;
    const wasRunning = this.#state === "running";
    this.#state = "stopping";
    this.#generation++;
    this.#terminated = (async () => {
      if (wasRunning) await this.#cleanup(reason, error);
      this.#finalize(reason, error);
    })();
    return this.#terminated;
  }

  /** {@link shutdown}, but marks the actor killed if it takes longer than its `shutdownMs`. */
  async shutdownWithin(reason: ExitReason, error?: unknown): Promise<void> {
    const done = await within(this.clock, this.shutdown(reason, error), this.settings.shutdownMs);
    if (!done) this.#finalize("killed", undefined);
  }

  async #cleanup(reason: ExitReason, error: unknown): Promise<void> {
    const children = [...this.childCells.values()].reverse();
    for (const child of children) await child.shutdownWithin("shutdown");
    for (const unwatch of this.#watching.values()) unwatch();
    this.#watching.clear();
    const actor = this.#actor;
    this.#actor = undefined;
    if (actor?.stopped === undefined) return;
    try {
      const result = actor.stopped(reason, error);
      if (isPromise(result)) await within(this.clock, result, this.settings.shutdownMs);
    } catch (e) {
      this.log.log("warn", "actor cleanup failed", {
        actor: formatRef(this.self),
        error: String(e),
      });
    }
  }

  #finalize(reason: ExitReason, error: unknown): void {
    if (this.#state === "terminated") return;
    this.#state = "terminated";
    this.#generation++;
    this.system.stats.deadLetters += this.#mailbox.user.clear();
    this.system.unregister(this as Cell<unknown>);
    this.#parent?.childCells.delete(this.self.path.slice(this.self.path.lastIndexOf("/") + 1));
    const down: Down = error === undefined
      ? { ref: this.self, reason }
      : { ref: this.self, reason, error };
    const watchers = [...this.#watchers];
    this.#watchers.clear();
    for (const onDown of watchers) {
      try {
        onDown(down);
      } catch (e) {
        this.log.log("warn", "down handler failed", {
          actor: formatRef(this.self),
          error: String(e),
        });
      }
    }
  }
}
