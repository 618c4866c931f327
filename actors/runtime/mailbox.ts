/**
 * A bounded mailbox: a fixed-size ring of user messages plus a small queue of system messages
 * (stop, down, restart, child exits) that are always taken first. A full ring refuses the message
 * instead of growing, so overload is answered explicitly.
 */

/** A FIFO ring buffer of fixed capacity; `push` returns false instead of growing. */
export class Ring<T> {
  readonly #items: (T | undefined)[];
  #head = 0;
  #size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`mailbox capacity must be a positive integer, got ${capacity}`);
    }
    this.#items = new Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  push(item: T): boolean {
    if (this.#size === this.capacity) return false;
    let at = this.#head + this.#size;
    if (at >= this.capacity) at -= this.capacity;
    this.#items[at] = item;
    this.#size++;
    return true;
  }

  /** Removes and returns the oldest item; undefined when empty. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined; // let the message be collected
    if (++this.#head === this.capacity) this.#head = 0;
    this.#size--;
    return item;
  }

  /** Empties the ring; returns how many items were dropped. */
  clear(): number {
    const dropped = this.#size;
    while (this.#size > 0) this.shift();
    this.#head = 0;
    return dropped;
  }
}

/**
 * User messages in a bounded ring, system messages in an unbounded but naturally small queue
 * (one entry per watch, child or control request, never per user message).
 */
export class Mailbox<M, S> {
  readonly user: Ring<M>;
  readonly #system: S[] = [];
  #systemHead = 0;

  constructor(capacity: number) {
    this.user = new Ring<M>(capacity);
  }

  /** Queues a user message; false when the mailbox is full. */
  post(message: M): boolean {
    return this.user.push(message);
  }

  /** Queues a system message; these are never refused. */
  postSystem(message: S): void {
    this.#system.push(message);
  }

  /** The next system message, if any. */
  takeSystem(): S | undefined {
    if (this.#systemHead === this.#system.length) return undefined;
    const message = this.#system[this.#systemHead++];
    if (this.#systemHead === this.#system.length) {
      this.#system.length = 0;
      this.#systemHead = 0;
    }
    return message;
  }

  get hasSystem(): boolean {
    return this.#systemHead < this.#system.length;
  }

  /** The next user message, if any. */
  takeUser(): M | undefined {
    return this.user.shift();
  }

  get hasUser(): boolean {
    return this.user.size > 0;
  }
}
