/**
 * The actor system of one process (one node): spawns actors, routes `tell` and `ask` to their
 * mailboxes, and sets up watches. Refs carry their node's id: a ref of another node is
 * unreachable here (processes talk through the block protocol, actors/node/).
 * Clock, randomness and the event-loop yield are injected so tests can drive time by hand.
 */
import { setImmediate } from "node:timers";
import { type Clock, systemClock } from "../../util/clock.ts";
import { type Logger, silentLogger } from "../../util/log.ts";
import { type Random, systemRandom } from "../../util/random.ts";
import type { Behavior, Down, SpawnOptions, TellResult } from "./behavior.ts";
import { AskTable } from "./ask.ts";
import { Cell } from "./cell.ts";
import { AskTimeoutError, DeadActorError, NoConnectionError, OverloadedError } from "./errors.ts";
import type { ActorRef, AnyRef } from "./ref.ts";

/** The path of every reply-to ref made by `ask`; the ask's id is the ref's incarnation. */
export const ASK_PATH = "$ask";

export interface SystemOptions {
  /** This node's id, unique among connected systems. Default "local". */
  readonly node?: string;
  readonly clock?: Clock;
  readonly random?: Random;
  readonly log?: Logger;
  /** Default mailbox bound. Default 1024. */
  readonly capacity?: number;
  /** Default messages per turn before yielding to the event loop. Default 64. */
  readonly throughput?: number;
  /** Default stop timeout. Default 5000 ms. */
  readonly shutdownMs?: number;
  /** Runs `fn` after pending I/O and timers; default `setImmediate` (about 1 µs). */
  readonly yieldToHost?: (fn: () => void) => void;
}

/** Counters of what was refused or dropped, for metrics and tests. */
export interface SystemStats {
  /** Messages to actors that were not running, or dropped from a stopping actor's mailbox. */
  deadLetters: number;
  /** Replies that arrived after their ask timed out (or for an unknown ask): dropped. */
  lateReplies: number;
  /** Messages refused because the target's mailbox was full. */
  overloaded: number;
}

/**
 * One node's actors.
 *
 * @example
 * ```ts
 * import { ActorSystem, type ActorRef } from "./mod.ts";
 *
 * type Counter = { t: "add"; n: number } | { t: "get"; replyTo: ActorRef<number> };
 * const system = new ActorSystem({ node: "n1" });
 * const counter = system.spawn<Counter>((ctx) => {
 *   let total = 0;
 *   return (m) => {
 *     if (m.t === "add") total += m.n;
 *     else ctx.tell(m.replyTo, total);
 *   };
 * }, { name: "counter" });
 * system.tell(counter, { t: "add", n: 2 });
 * const total = await system.ask<Counter, number>(counter, (replyTo) => ({ t: "get", replyTo }), 1000);
 * console.assert(total === 2);
 * await system.shutdown();
 * ```
 */
export class ActorSystem {
  readonly node: string;
  readonly clock: Clock;
  readonly random: Random;
  readonly log: Logger;
  readonly stats: SystemStats = { deadLetters: 0, lateReplies: 0, overloaded: 0 };
  readonly yieldToHost: (fn: () => void) => void;

  readonly #defaults: { capacity: number; throughput: number; shutdownMs: number };
  readonly #cells = new Map<string, Cell<unknown>>();
  /** Top-level actors in spawn order, for an orderly shutdown. */
  readonly #topLevel = new Map<string, Cell<unknown>>();
  readonly #asks: AskTable;
  #askSeq: number;
  #incarnationSeq: number;
  #nameSeq = 0;
  #closed = false;

  constructor(options: SystemOptions = {}) {
    this.node = options.node ?? "local";
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? systemRandom;
    this.log = options.log ?? silentLogger;
    this.yieldToHost = options.yieldToHost ?? ((fn) => void setImmediate(fn));
    this.#defaults = {
      capacity: options.capacity ?? 1024,
      throughput: options.throughput ?? 64,
      shutdownMs: options.shutdownMs ?? 5000,
    };
    this.#asks = new AskTable(this.clock, (target, ms) => new AskTimeoutError(target, ms));
    // Random starting points, so refs and ask ids of an earlier run of this node do not match.
    this.#incarnationSeq = 1 + Math.floor(this.random.next() * 2 ** 30);
    this.#askSeq = 1 + Math.floor(this.random.next() * 2 ** 30);
  }

  /**
   * Starts a top-level actor and returns its ref. Throws if the name is taken or the behaviour
   * throws while making the first instance.
   */
  spawn<M>(behavior: Behavior<M>, options: SpawnOptions = {}): ActorRef<M> {
    return this.spawnCell(behavior, options, undefined).self;
  }

  /** @internal Used by spawn and by `ctx.spawn`. */
  spawnCell<M>(behavior: Behavior<M>, options: SpawnOptions, parent: Cell<unknown> | undefined) {
    if (this.#closed) throw new Error(`actor system "${this.node}" is shut down`);
    const name = options.name ?? `$${this.#nameSeq++}`;
    if (name === "" || name.includes("/") || name === ASK_PATH) {
      throw new RangeError(`invalid actor name "${name}": non-empty, no "/", not "${ASK_PATH}"`);
    }
    const path = parent === undefined ? name : `${parent.self.path}/${name}`;
    if (this.#cells.has(path)) throw new Error(`an actor "${path}" already runs on ${this.node}`);
    const concurrency = options.concurrency ?? 1;
    if (!(concurrency >= 1)) throw new RangeError(`concurrency must be >= 1, got ${concurrency}`);
    const self: ActorRef<M> = { node: this.node, path, incarnation: this.#incarnationSeq++ };
    const cell = new Cell<M>(this, self, parent, behavior, {
      capacity: options.capacity ?? this.#defaults.capacity,
      throughput: options.throughput ?? this.#defaults.throughput,
      concurrency,
      shutdownMs: options.shutdownMs ?? this.#defaults.shutdownMs,
    });
    this.#cells.set(path, cell as Cell<unknown>);
    (parent?.childCells ?? this.#topLevel).set(name, cell as Cell<unknown>);
    try {
      cell.start();
    } catch (error) {
      void cell.shutdown("crash", error); // stops children it may have spawned, unregisters
      throw error;
    }
    return cell;
  }

  /** @internal Called by a cell once it has stopped for good. */
  unregister(cell: Cell<unknown>): void {
    if (this.#cells.get(cell.self.path) === cell) this.#cells.delete(cell.self.path);
    if (this.#topLevel.get(cell.self.path) === cell) this.#topLevel.delete(cell.self.path);
  }

  /** The ref of the running actor at `path` on this node, if any. */
  resolve<M>(path: string): ActorRef<M> | undefined {
    return this.#cells.get(path)?.self as ActorRef<M> | undefined;
  }

  /**
   * Sends `message` at most once. Returns `accepted` when it was queued, `overloaded` when the
   * mailbox was full, `dead` when the actor is not running, `unreachable` when its node is not
   * connected. Never throws and never blocks.
   */
  tell<M>(ref: ActorRef<M>, message: M): TellResult {
    return this.#send(ref, message);
  }

  #send(ref: AnyRef, message: unknown): TellResult {
    if (ref.node !== this.node) return "unreachable";
    if (ref.path === ASK_PATH) return this.#reply(ref.incarnation, message);
    const cell = this.#cells.get(ref.path);
    if (cell === undefined || cell.self.incarnation !== ref.incarnation) {
      this.stats.deadLetters++;
      return "dead";
    }
    const result = cell.post(message);
    if (result === "overloaded") this.stats.overloaded++;
    else if (result === "dead") this.stats.deadLetters++;
    return result;
  }

  #reply(id: number, message: unknown): TellResult {
    if (this.#asks.resolve(id, message)) return "accepted";
    this.stats.lateReplies++;
    return "dead";
  }

  /**
   * Sends the message that `build` makes from a one-shot reply-to ref and resolves with the
   * first reply sent to that ref. Rejects with {@link AskTimeoutError} after `deadlineMs` (a later
   * reply is dropped and counted in `stats.lateReplies`), at once with {@link OverloadedError}
   * when the mailbox is full, {@link DeadActorError} when the actor is not running and
   * {@link NoConnectionError} when its node is not connected.
   */
  ask<Q, R>(ref: ActorRef<Q>, build: (replyTo: ActorRef<R>) => Q, deadlineMs: number): Promise<R> {
    if (!(deadlineMs > 0) || !Number.isFinite(deadlineMs)) {
      return Promise.reject(new RangeError(`ask needs a finite deadline > 0, got ${deadlineMs}`));
    }
    const id = this.#askSeq++;
    const replyTo: ActorRef<R> = { node: this.node, path: ASK_PATH, incarnation: id };
    return new Promise<R>((resolve, reject) => {
      this.#asks.add(id, ref, deadlineMs, resolve, reject);
      let result: TellResult;
      try {
        result = this.#send(ref, build(replyTo));
      } catch (error) {
        this.#asks.reject(id, () => error as Error);
        return;
      }
      if (result !== "accepted") this.#asks.reject(id, (target) => refusal(result, target));
    });
  }

  /** Asks the actor to stop normally, ahead of its queued messages. */
  stop(ref: AnyRef): TellResult {
    if (ref.node !== this.node) return "unreachable";
    const cell = this.#cells.get(ref.path);
    if (cell === undefined || cell.self.incarnation !== ref.incarnation) return "dead";
    cell.stop();
    return "accepted";
  }

  /**
   * Calls `onDown` once when the actor stops for good (with reason `noproc` if it is not running
   * now, `noconnection` if its node's link closes). Returns a function that cancels the watch.
   * `onDown` never runs synchronously inside this call.
   */
  watch(ref: AnyRef, onDown: (down: Down) => void): () => void {
    if (ref.node !== this.node) return this.#downSoon(ref, "noconnection", onDown);
    const cell = this.#cells.get(ref.path);
    if (cell === undefined || cell.self.incarnation !== ref.incarnation) {
      return this.#downSoon(ref, "noproc", onDown);
    }
    return cell.addWatcher(onDown);
  }

  #downSoon(ref: AnyRef, reason: "noproc" | "noconnection", onDown: (d: Down) => void) {
    let cancelled = false;
    queueMicrotask(() => cancelled || onDown({ ref, reason }));
    return () => void (cancelled = true);
  }

  /** Resolves when the actor has stopped for good (immediately if it is not running). */
  terminated(ref: AnyRef): Promise<Down> {
    return new Promise((resolve) => this.watch(ref, resolve));
  }

  /** Number of actors running (all levels). */
  get size(): number {
    return this.#cells.size;
  }

  /**
   * Stops every top-level actor in reverse spawn order (each within its shutdown timeout), fails
   * pending asks and releases the ask deadline timer (which otherwise stays armed up to one
   * deadline after the last ask). The system refuses new spawns afterwards.
   */
  async shutdown(): Promise<void> {
    this.#closed = true;
    for (const cell of [...this.#topLevel.values()].reverse()) {
      await cell.shutdownWithin("shutdown");
    }
    this.#asks.rejectWhere(() => true, (target) => new DeadActorError(target));
    this.#asks.close();
  }
}

function refusal(result: TellResult, ref: AnyRef): Error {
  if (result === "overloaded") return new OverloadedError(ref);
  if (result === "unreachable") return new NoConnectionError(ref);
  return new DeadActorError(ref);
}
