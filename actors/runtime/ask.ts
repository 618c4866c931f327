/**
 * The table of asks waiting for a reply. Deadlines are grouped into 1 ms buckets served by one
 * timer on the injected clock, so an ask costs a map entry rather than a host timer (a host timer
 * costs about 1.3 µs to set and cancel, more than the rest of a local round trip). The timer is
 * left armed when the table empties (the next ask usually follows at once); it stops by itself
 * at its due time, or at {@link AskTable.close}.
 */
import type { Clock, Timer } from "../../util/clock.ts";
import type { AnyRef } from "./ref.ts";

interface Pending {
  readonly resolve: (value: never) => void;
  readonly reject: (error: Error) => void;
  readonly target: AnyRef;
  readonly deadlineMs: number;
  /** The bucket (a due time in whole ms) that holds this ask's id. */
  readonly due: number;
}

export class AskTable {
  readonly #pending = new Map<number, Pending>();
  /** Due time → ids of asks due then. */
  readonly #buckets = new Map<number, Set<number>>();
  /** Due times of the buckets, ascending. */
  readonly #dues: number[] = [];
  #timer: Timer | undefined;
  #armedFor = Infinity;

  constructor(
    readonly clock: Clock,
    readonly onTimeout: (target: AnyRef, deadlineMs: number) => Error,
  ) {}

  get size(): number {
    return this.#pending.size;
  }

  has(id: number): boolean {
    return this.#pending.has(id);
  }

  /** Registers ask `id`, to be rejected by `onTimeout` once `deadlineMs` has passed. */
  add(
    id: number,
    target: AnyRef,
    deadlineMs: number,
    resolve: (value: never) => void,
    reject: (error: Error) => void,
  ): void {
    const due = Math.ceil(this.clock.now() + deadlineMs);
    this.#pending.set(id, { resolve, reject, target, deadlineMs, due });
    let bucket = this.#buckets.get(due);
    if (bucket === undefined) {
      bucket = new Set();
      this.#buckets.set(due, bucket);
      this.#insertDue(due);
    }
    bucket.add(id);
    if (due < this.#armedFor) this.#arm(due);
  }

  /** Hands the reply to ask `id`; false when it is not pending (timed out, or unknown). */
  resolve(id: number, value: unknown): boolean {
    const pending = this.#take(id);
    if (pending === undefined) return false;
    pending.resolve(value as never);
    return true;
  }

  /** Fails ask `id` with `error` made from its target; false when it is not pending. */
  reject(id: number, error: (target: AnyRef) => Error): boolean {
    const pending = this.#take(id);
    if (pending === undefined) return false;
    pending.reject(error(pending.target));
    return true;
  }

  /** Fails every pending ask whose target matches. */
  rejectWhere(match: (target: AnyRef) => boolean, error: (target: AnyRef) => Error): void {
    for (const [id, pending] of this.#pending) {
      if (match(pending.target)) this.reject(id, error);
    }
  }

  #take(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (pending === undefined) return undefined;
    this.#pending.delete(id);
    this.#buckets.get(pending.due)?.delete(id);
    return pending;
  }

  /** Cancels the timer and forgets every bucket (pending asks must have been failed first). */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#armedFor = Infinity;
    this.#buckets.clear();
    this.#dues.length = 0;
  }

  #insertDue(due: number): void {
    const dues = this.#dues;
    let at = dues.length;
    while (at > 0 && dues[at - 1]! > due) at--; // deadlines mostly grow: usually no step back
    dues.splice(at, 0, due);
  }

  #arm(due: number): void {
    this.#timer?.cancel();
    this.#armedFor = due;
    this.#timer = this.clock.setTimeout(() => this.#expire(), due - this.clock.now());
  }

  #expire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = this.clock.now();
    // Fail what is due, and drop emptied buckets so the timer is not woken for them.
    while (this.#dues.length > 0) {
      const due = this.#dues[0]!;
      const ids = this.#buckets.get(due)!;
      if (due > now && ids.size > 0) break;
      this.#dues.shift();
      this.#buckets.delete(due);
      for (const id of ids) {
        const pending = this.#pending.get(id);
        if (pending === undefined) continue;
        this.#pending.delete(id);
        pending.reject(this.onTimeout(pending.target, pending.deadlineMs));
      }
    }
    if (this.#dues.length > 0) this.#arm(this.#dues[0]!);
  }
}
