/**
 * The actor runtime of dst: every storage node, mapping and resync task is an actor.
 *
 * - {@link ActorSystem}: one per process (node); `spawn`, `tell`, `ask` (mandatory deadline),
 *   `watch`, `stop`, `shutdown`.
 * - {@link ActorRef}: plain data `{node, path, incarnation}`, msgpack-safe and location-transparent.
 * - {@link Behavior}: a factory of fresh actor state, called on spawn and on every restart.
 * - {@link supervisor}: OTP-style supervision with restart intensity and jittered backoff.
 *
 * @example
 * ```ts
 * import { ActorSystem, type ActorRef, supervisor } from "./mod.ts";
 *
 * type Disk = { t: "read"; offset: number; replyTo: ActorRef<Uint8Array> };
 * const system = new ActorSystem({ node: "node-1" });
 * system.spawn(supervisor({
 *   strategy: "one_for_one",
 *   children: [{
 *     id: "disk",
 *     behavior: (ctx) => (m: Disk) => {
 *       // A deferred reply: the mailbox moves on while the "I/O" completes.
 *       ctx.defer(Promise.resolve(new Uint8Array(512)).then((data) => ctx.tell(m.replyTo, data)));
 *     },
 *   }],
 * }), { name: "storage" });
 * const disk = system.resolve<Disk>("storage/disk")!;
 * const block = await system.ask<Disk, Uint8Array>(
 *   disk,
 *   (replyTo) => ({ t: "read", offset: 0, replyTo }),
 *   1000,
 * );
 * console.assert(block.length === 512);
 * await system.shutdown();
 * ```
 *
 * @module
 */
export { ActorSystem } from "./system.ts";
export type { SystemOptions, SystemStats } from "./system.ts";
export type {
  Actor,
  ActorContext,
  Behavior,
  Down,
  ExitReason,
  Handler,
  SpawnOptions,
  TellResult,
} from "./behavior.ts";
export { formatRef, isRef, makeRef, sameRef } from "./ref.ts";
export type { ActorRef, AnyRef } from "./ref.ts";
export {
  ActorError,
  AskTimeoutError,
  DeadActorError,
  NoConnectionError,
  OverloadedError,
} from "./errors.ts";
export { supervisor, SupervisorGaveUpError } from "./supervisor.ts";
export type {
  ChildSpec,
  ChildStatus,
  RestartType,
  Strategy,
  SupervisorMessage,
  SupervisorSpec,
} from "./supervisor.ts";
export type { BackoffOptions } from "./backoff.ts";
export { backoffDelay, RestartWindow } from "./backoff.ts";
