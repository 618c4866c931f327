/**
 * The shapes a user of the runtime writes against: a behaviour (a factory of fresh actor state,
 * called on spawn and on every restart), the context it gets, spawn options, exit reasons and
 * down signals.
 */
import type { Clock } from "../../util/clock.ts";
import type { Logger } from "../../util/log.ts";
import type { Random } from "../../util/random.ts";
import type { ActorRef, AnyRef } from "./ref.ts";
import type { ActorSystem } from "./system.ts";

/**
 * Why an actor stopped:
 * - `normal`: it stopped itself or was asked to stop;
 * - `crash`: its handler threw or a promise it returned or deferred rejected (see `Down.error`);
 * - `shutdown`: its parent or supervisor stopped it;
 * - `killed`: it did not finish stopping within its shutdown timeout;
 * - `noproc`: it was not running when the watch was set up;
 * - `noconnection`: the link to its node closed, so its fate is unknown.
 */
export type ExitReason = "normal" | "crash" | "shutdown" | "killed" | "noproc" | "noconnection";

/** Sent to watchers once, when a watched actor stops for good (not on a supervised restart). */
export interface Down {
  readonly ref: AnyRef;
  readonly reason: ExitReason;
  /** The error of a crash (a message string when it came from another node). */
  readonly error?: unknown;
}

/** What `tell` did with a message. Only `accepted` means it was queued (at most once). */
export type TellResult = "accepted" | "overloaded" | "dead" | "unreachable";

/** One actor's state and handlers, as made by a {@link Behavior}. */
export interface Actor<M> {
  /**
   * Handles one message. Returning a promise keeps the actor busy until it settles (with
   * `concurrency: n`, up to n such promises run at once); to answer later without blocking the
   * mailbox, start the work with `ctx.defer` and return nothing. A throw or a rejection crashes
   * the actor.
   */
  receive(message: M): void | Promise<unknown>;
  /** Cleanup on stop, crash or restart; bounded by the actor's `shutdownMs`. */
  stopped?(reason: ExitReason, error?: unknown): void | Promise<void>;
}

/** A message handler: the short form of an {@link Actor} with no cleanup. */
export type Handler<M> = (message: M) => void | Promise<unknown>;

/**
 * Makes an actor's fresh state. Called once on spawn and again on every supervised restart, so
 * a restart always begins clean.
 */
export type Behavior<M> = (ctx: ActorContext<M>) => Actor<M> | Handler<M>;

export interface SpawnOptions {
  /** Last path segment; unique among siblings; no "/". Default: a generated `$n`. */
  readonly name?: string;
  /** Mailbox bound (user messages). Default: the system's (1024). */
  readonly capacity?: number;
  /** Messages handled per turn before yielding to the event loop. Default: the system's (64). */
  readonly throughput?: number;
  /** How many promises returned by `receive` may be pending at once. Default 1. */
  readonly concurrency?: number;
  /** Time allowed for `stopped` (and its children) before the actor is killed. Default 5000. */
  readonly shutdownMs?: number;
}

/** What a behaviour gets to act on the world: its own ref, messaging, children, watches. */
export interface ActorContext<M> {
  readonly self: ActorRef<M>;
  readonly system: ActorSystem;
  readonly parent: AnyRef | undefined;
  readonly clock: Clock;
  readonly random: Random;
  readonly log: Logger;
  /** Sends at most once; see {@link TellResult}. */
  tell<T>(ref: ActorRef<T>, message: T): TellResult;
  /** Request/response with a mandatory deadline; see {@link ActorSystem.ask}. */
  ask<Q, R>(ref: ActorRef<Q>, build: (replyTo: ActorRef<R>) => Q, deadlineMs: number): Promise<R>;
  /** Starts a child; it is stopped (in reverse start order) before this actor stops. */
  spawn<C>(behavior: Behavior<C>, options?: SpawnOptions): ActorRef<C>;
  /** Delivers `onDown(down)` as a message ahead of queued user messages when `ref` stops. */
  watch(ref: AnyRef, onDown: (down: Down) => M): void;
  unwatch(ref: AnyRef): void;
  /**
   * Tracks work that outlives the current message (a deferred reply): a rejection crashes the
   * actor, as a throw in `receive` would, unless the actor restarted or stopped meanwhile.
   */
  defer(work: Promise<unknown>): void;
  /** Stops this actor normally after the current message. */
  stop(): void;
  /** Refs of running children, in start order. */
  children(): AnyRef[];
}
