/**
 * What a client may make the NBD server hold: a count of requests and their payload bytes, taken
 * when a request is read and given back only when its reply has been written to the socket. One
 * budget per connection and one shared by the whole server, so neither a client that stops
 * reading nor many clients at once can grow the server without bound.
 */

export class Budget {
  readonly maxCount: number;
  readonly maxBytes: number;
  #count = 0;
  #bytes = 0;
  #waiters: (() => void)[] = [];

  constructor(maxCount: number, maxBytes: number) {
    if (!(maxCount >= 1) || !(maxBytes >= 1)) {
      throw new RangeError(
        `a budget needs a positive count and size, got ${maxCount}, ${maxBytes}`,
      );
    }
    this.maxCount = maxCount;
    this.maxBytes = maxBytes;
  }

  /** Requests holding part of the budget now. */
  get count(): number {
    return this.#count;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Whether `cost` bytes may be taken now. A request larger than the whole budget still fits
   * when nothing else holds bytes, so an oversized request waits but can never wait for ever.
   */
  fits(cost: number): boolean {
    return this.#count < this.maxCount &&
      (this.#bytes === 0 || this.#bytes + cost <= this.maxBytes);
  }

  take(cost: number): void {
    this.#count++;
    this.#bytes += cost;
  }

  give(cost: number): void {
    this.#count--;
    this.#bytes -= cost;
    if (this.#count < 0 || this.#bytes < 0) {
      throw new Error(`budget given back more than was taken (${this.#count}, ${this.#bytes})`);
    }
    this.wake();
  }

  /** Resolves at the next {@link give} or {@link wake}; the caller checks again. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Wakes every waiter, e.g. when one of them must notice that its connection closed. */
  wake(): void {
    if (this.#waiters.length === 0) return;
    for (const resolve of this.#waiters.splice(0)) resolve();
  }
}
