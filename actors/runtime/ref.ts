/**
 * Actor references: plain data `{node, path, incarnation}` that survives msgpack, so a ref can be
 * sent in a message to another process and used there exactly like a local one.
 */

declare const messageType: unique symbol;

/**
 * Addresses one actor. `M` is the message type the actor accepts; it exists only for the type
 * checker (the phantom property is never present at run time), so a ref decoded from msgpack is a
 * valid ref.
 *
 * - `node`: the id of the {@link ActorSystem} that hosts the actor (one per process).
 * - `path`: the actor's name within its system, e.g. `"storage/mirror/leg-0"`.
 * - `incarnation`: tells one life of a path from the next, so a ref to an actor that was stopped
 *   and spawned again under the same path does not reach the new one. A supervisor restart keeps
 *   the incarnation: the ref stays valid across restarts.
 */
export interface ActorRef<M> {
  readonly node: string;
  readonly path: string;
  readonly incarnation: number;
  /** Phantom: never set. Contravariant in `M`, like a function that accepts `M`. */
  readonly [messageType]?: (message: M) => void;
}

/** A ref whose message type is not known here (e.g. a watched actor). */
// deno-lint-ignore no-explicit-any
export type AnyRef = ActorRef<any>;

/** True when both refs name the same actor life. */
export function sameRef(a: AnyRef, b: AnyRef): boolean {
  return a.node === b.node && a.path === b.path && a.incarnation === b.incarnation;
}

/** A printable form, for logs and error messages: `node/path#incarnation`. */
export function formatRef(ref: AnyRef): string {
  return `${ref.node}/${ref.path}#${ref.incarnation}`;
}

/** Checks the shape of a ref that arrived from outside the process (msgpack, JSON). */
export function isRef(value: unknown): value is AnyRef {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.node === "string" && typeof v.path === "string" &&
    typeof v.incarnation === "number";
}

/** Makes a ref; mostly for tests and for remote code that resolves a path it was told. */
export function makeRef<M>(node: string, path: string, incarnation: number): ActorRef<M> {
  return { node, path, incarnation };
}
