/**
 * The typed failures of `ask` and `tell`, so callers can tell a slow peer (timeout) from a busy
 * one (overloaded) from a gone one (dead, no connection) and react differently.
 */
import { type AnyRef, formatRef } from "./ref.ts";

/** Base class of every actor runtime error; `target` is the actor that was addressed. */
export class ActorError extends Error {
  constructor(readonly target: AnyRef, message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No reply arrived within the ask's deadline. A reply that arrives later is dropped. */
export class AskTimeoutError extends ActorError {
  constructor(target: AnyRef, readonly deadlineMs: number) {
    super(target, `no reply from ${formatRef(target)} within ${deadlineMs} ms`);
  }
}

/** The target's mailbox was full: the request was refused at once, never queued. */
export class OverloadedError extends ActorError {
  constructor(target: AnyRef) {
    super(target, `${formatRef(target)} is overloaded (mailbox full); retry later or slow down`);
  }
}

/** The target is not running: it stopped, or never existed on its node. */
export class DeadActorError extends ActorError {
  constructor(target: AnyRef) {
    super(target, `${formatRef(target)} is not running (stopped, or never spawned)`);
  }
}

/** No link to the target's node: connect the nodes (remote.ts) or check the peer is up. */
export class NoConnectionError extends ActorError {
  constructor(target: AnyRef) {
    super(target, `no connection to node "${target.node}" for ${formatRef(target)}`);
  }
}
